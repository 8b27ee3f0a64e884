"""The container smoke test's files, checked without a Docker engine.

deploy/smoke.sh runs the compose stack for real (CI's last stage); these checks keep its
override (deploy/compose.smoke.yml) a valid Compose document that changes only what the
machine requires (host networking on loopback ports of its own, stand-in stores, a CPU
worker), and its helpers honest.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ganserve.settings import Settings
from tests.deploy.support import (
    CI_SCRIPT,
    COMPOSE_FILE,
    COMPOSE_SCHEMA,
    ROOT,
    SMOKE_HELPER,
    SMOKE_OVERRIDE,
    SMOKE_SCRIPT,
    Tagged,
    interpolate,
    load_compose,
    merge_compose,
    setting_env_names,
)
from tests.deploy.test_compose import DUMMY, SECRETS_NEEDED, secrets_held

# The machine's own services (PostgreSQL, Redis) and the API's usual port: never the smoke's.
TAKEN_PORTS = {5432, 6379, 8000}


def _override() -> dict[str, Any]:
    return load_compose(SMOKE_OVERRIDE)


def _merged(variables: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml + the override, interpolated (as `docker compose config`)."""
    merged = merge_compose(load_compose(COMPOSE_FILE), _override())
    model = interpolate(merged, DUMMY if variables is None else variables)
    assert isinstance(model, dict)
    return model


def _started(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services `docker compose up` starts (no profile)."""
    return {name: svc for name, svc in model["services"].items() if not svc.get("profiles")}


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


def test_merge_helper() -> None:
    base = {"a": {"ports": ["1:1"], "command": ["x"], "deploy": {"r": 1}, "env": {"A": "1"}}}
    override = {
        "a": {
            "ports": Tagged("reset", []),
            "command": ["y"],
            "deploy": Tagged("reset", {}),
            "env": {"B": "2"},
        },
        "b": {"image": "i"},
    }
    assert merge_compose(base, override) == {
        "a": {"ports": [], "command": ["y"], "deploy": {}, "env": {"A": "1", "B": "2"}},
        "b": {"image": "i"},
    }
    assert merge_compose({"volumes": ["a:/a"]}, {"volumes": ["b:/b"]})["volumes"] == [
        "a:/a",
        "b:/b",
    ]


def test_merged_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(_merged()))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_override_only_touches_known_services() -> None:
    main = load_compose(COMPOSE_FILE)["services"]
    assert set(_override()["services"]) <= set(main)


def test_every_started_service_uses_the_host_network_only() -> None:
    model = _merged()
    for name, service in _started(model).items():
        assert service.get("network_mode") == "host", name
        assert not service.get("networks"), name
        assert not service.get("ports"), f"{name}: ports are meaningless (and unwanted) here"
    assert not model.get("networks")


def test_servers_listen_on_loopback_ports_of_their_own() -> None:
    model = _merged()
    services = _started(model)
    postgres = int(_env(services["postgres"])["PGPORT"])
    redis = int(_env(services["redis"])["REDIS_PORT"])
    api_command = services["api"]["command"]
    api = int(api_command[api_command.index("--port") + 1])
    assert api_command[api_command.index("--host") + 1] == "127.0.0.1"
    ports = {postgres, redis, api}
    assert len(ports) == 3 and not ports & TAKEN_PORTS
    assert f"redis-cli -p {redis} ping" in " ".join(services["redis"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{api}/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    # The ganserve containers reach the stores on those ports, on the loopback.
    for name in ("migrate", "api", "worker"):
        env = _env(services[name])
        assert f"@127.0.0.1:{postgres}/ganserve" in env["DATABASE_URL"], name
        if name != "migrate":
            assert f"@127.0.0.1:{redis}/0" in env["REDIS_URL"], name


def test_smoke_ports_follow_the_script_variables() -> None:
    moved = {**DUMMY, "SMOKE_POSTGRES_PORT": "1111", "SMOKE_REDIS_PORT": "2222"}
    moved["SMOKE_API_PORT"] = "3333"
    services = _merged(moved)["services"]
    assert _env(services["postgres"])["PGPORT"] == "1111"
    assert "127.0.0.1:2222/0" in _env(services["worker"])["REDIS_URL"]
    assert services["api"]["command"][-1] == "3333"


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_ganserve_settings_load_in_the_smoke_stack(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in setting_env_names():
        monkeypatch.delenv(variable, raising=False)
    for variable, value in _env(_merged()["services"][name]).items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert settings.database_url == (
        f"postgresql+psycopg://ganserve:{DUMMY['POSTGRES_PASSWORD']}@127.0.0.1:55432/ganserve"
    )
    if name == "worker":
        assert settings.worker_device == "cpu"


def test_worker_runs_on_the_cpu_without_the_gpu_reservation() -> None:
    worker = _merged()["services"]["worker"]
    assert not worker.get("deploy")
    assert _env(worker)["GANSERVE_WORKER_DEVICE"] == "cpu"
    # What the hand-over check relies on: the production stop grace period, kept.
    assert worker["stop_grace_period"] == "2m"


def test_stores_are_stand_ins_that_are_never_pulled() -> None:
    services = _merged()["services"]
    for name in ("postgres", "redis"):
        assert services[name]["image"] == "ganserve-smoke/stores:bookworm", name
        assert services[name]["pull_policy"] == "never", name
    for name in ("api", "worker"):
        assert services[name]["pull_policy"] == "never", name
    # The production commands, volumes and checks stay: only ports and images change.
    main = interpolate(load_compose(COMPOSE_FILE), DUMMY)["services"]
    assert services["redis"]["command"] == main["redis"]["command"]
    assert services["postgres"]["healthcheck"] == main["postgres"]["healthcheck"]
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name]["volumes"] == main[name]["volumes"], name


def test_each_container_still_gets_only_the_secrets_it_needs() -> None:
    assert secrets_held(_merged()) == SECRETS_NEEDED


def test_smoke_script_parses_and_is_executable() -> None:
    assert SMOKE_SCRIPT.stat().st_mode & 0o111
    result = subprocess.run(["bash", "-n", str(SMOKE_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = SMOKE_SCRIPT.read_text()
    # Host networking for every build and the daemon; the override for every compose call.
    assert "--bridge=none --iptables=false --ip-masq=false" in text
    assert re.search(r"build_args=\(--network host", text)
    assert "-f docker-compose.yml -f deploy/compose.smoke.yml" in text
    assert "exit 77" in text and "SKIPPED" in text


def test_ci_runs_the_smoke_test_last() -> None:
    lines = [line.strip() for line in CI_SCRIPT.read_text().splitlines() if line.strip()]
    commands = [line for line in lines if not line.startswith("#")]
    smoke = [i for i, line in enumerate(commands) if re.match(r"deploy/smoke\.sh\b", line)]
    tests = [i for i, line in enumerate(commands) if re.search(r"\bpytest\b|\$TEST_LINE", line)]
    assert len(smoke) == 1 and tests
    assert smoke[0] > max(tests), "the smoke test runs after the tests"
    # ...as the last stage: after it, only the handling of its exit status. Its "skipped"
    # (77) is reported as such and does not fail CI; any other failure does.
    after = commands[smoke[0] + 1 :]
    assert all(re.match(r"(if|elif|else|fi|echo|exit)\b", line) for line in after), after
    assert "-eq 77" in "\n".join(after) and 'exit "$smoke_status"' in "\n".join(after)


def _helper(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(SMOKE_HELPER), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_smoke_helper_lists_what_the_image_installs() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = _helper("requirements", str(ROOT / "pyproject.toml")).splitlines()
    project = data["project"]
    expected = (
        project["dependencies"]
        + project["optional-dependencies"]["postgres"]
        + data["build-system"]["requires"]
    )
    assert listed == expected
    assert any(line.startswith("torch") for line in listed)


def test_smoke_helper_builds_a_pep_503_index(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("Jinja2-3.1.4-py3-none-any.whl", "typing_extensions-4.12.2-py3-none-any.whl",
                 "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"):  # fmt: skip
        (wheels / name).write_bytes(b"wheel")
    assert _helper("index", str(wheels), str(tmp_path / "index")).strip() == "3"
    simple = tmp_path / "index" / "simple"
    assert sorted(path.name for path in simple.iterdir()) == [
        "jinja2",
        "torch",
        "typing-extensions",
    ]
    link = simple / "torch" / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert link.is_symlink() and link.read_bytes() == b"wheel"
    # Built again, it is the same (stale links are removed first).
    assert _helper("index", str(wheels), str(tmp_path / "index")).strip() == "3"
