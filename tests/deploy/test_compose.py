"""docker-compose.yml, checked without a Docker engine.

It must be a valid Compose Specification document once interpolated, require every secret
with `${VAR:?message}`, give ganserve containers only real settings and real commands, and
keep the properties the deployment relies on (DESIGN §3, §10; docs/deployment.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ganserve.settings import Settings
from tests.deploy.support import (
    COMPOSE_FILE,
    COMPOSE_SCHEMA,
    DEPLOYMENT_DOC,
    NON_SETTING_ENV,
    CommandError,
    InterpolationError,
    Reference,
    check_ganserve_args,
    ganserve_command_lines,
    interpolate,
    setting_env_names,
)

SECRETS = {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GANSERVE_API_KEYS"}
DUMMY = {name: f"dummy-{name.lower().replace('_', '-')}" for name in SECRETS}
GANSERVE_SERVICES = {"migrate", "api", "worker"}


def _raw() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def _references() -> list[Reference]:
    found: list[Reference] = []
    interpolate(_raw(), DUMMY, found=found)
    return found


def _model(variables: dict[str, str] | None = None) -> dict[str, Any]:
    """The interpolated Compose model, as `docker compose config` would see it."""
    model = interpolate(_raw(), DUMMY if variables is None else variables)
    assert isinstance(model, dict)
    return model


def _services() -> dict[str, dict[str, Any]]:
    services = _model()["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _seconds(duration: str) -> float:
    """A Compose duration ("2m", "1m30s", "90s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --- the document ----------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(_model()), key=lambda error: list(error.path))
    assert not errors, "\n".join(
        f"{'.'.join(map(str, error.path)) or '<root>'}: {error.message}" for error in errors
    )


def test_schema_check_would_catch_a_mistake() -> None:
    """The validation above is not vacuous: a misspelt key fails it."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    broken = _model()
    broken["services"]["api"]["depends_onn"] = broken["services"]["api"].pop("depends_on")
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_no_obsolete_version_key() -> None:
    assert "version" not in _raw()


# --- secrets and interpolation ---------------------------------------------------------------


def test_every_secret_is_required_with_a_message() -> None:
    references = _references()
    for secret in SECRETS:
        uses = [ref for ref in references if ref.name == secret]
        assert uses, f"{secret} is never used"
        for ref in uses:
            assert ref.op == ":?" and ref.arg.strip(), (
                f"{ref.where}: {secret} must be written ${{{secret}:?message}}"
            )


def test_every_variable_has_a_default_or_is_required() -> None:
    """An unset variable must never silently become an empty string."""
    for ref in _references():
        assert ref.op in (":-", ":?"), f"{ref.where}: ${{{ref.name}}} has no default or :?"
        if ref.op == ":?":
            assert ref.name in SECRETS, f"{ref.where}: {ref.name} is required but not a secret"


@pytest.mark.parametrize("missing", sorted(SECRETS))
@pytest.mark.parametrize("unset", [True, False], ids=["unset", "empty"])
def test_compose_refuses_to_start_without_each_secret(missing: str, unset: bool) -> None:
    variables = {name: value for name, value in DUMMY.items() if name != missing}
    if not unset:
        variables[missing] = ""  # as in a fresh copy of .env.example: GANSERVE_API_KEYS=
    with pytest.raises(InterpolationError, match=missing):
        _model(variables)


def test_interpolation_helper() -> None:
    found: list[Reference] = []
    value = interpolate(
        {"a": "x${A:-d}y", "b": "${B:?need B}", "c": "$$HOME", "d": ["${C-e}", "$D"]},
        {"B": "b", "D": "dd"},
        found=found,
    )
    assert value == {"a": "xdy", "b": "b", "c": "$HOME", "d": ["e", "dd"]}
    assert [(ref.name, ref.op, ref.arg) for ref in found] == [
        ("A", ":-", "d"),
        ("B", ":?", "need B"),
        ("C", "-", "e"),
        ("D", None, ""),
    ]
    with pytest.raises(InterpolationError, match="need B"):
        interpolate("${B:?need B}", {})
    with pytest.raises(InterpolationError, match="cannot read"):
        interpolate("${A:-${B}}", {})


# --- ganserve containers: settings and commands ------------------------------------------


def _ganserve_services() -> dict[str, dict[str, Any]]:
    services = _services()
    found = {
        name: service
        for name, service in services.items()
        if "build" in service or str(service.get("image", "")).startswith("ganserve")
    }
    assert set(found) == GANSERVE_SERVICES
    return found


def test_ganserve_services_share_one_image_built_once() -> None:
    services = _ganserve_services()
    images = {service["image"] for service in services.values()}
    assert images == {"ganserve:latest"}
    assert _raw()["x-ganserve"]["image"] == "${GANSERVE_IMAGE:-ganserve:latest}"
    # One `build:` (compose builds each service that has one); the others run its image by
    # name, and compose does not try to pull an image that a service of the project builds.
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["migrate"]
    build = services["migrate"]["build"]
    assert build["context"] == "."
    assert set(build["args"]) == {"TORCH_FLAVOUR", "TORCH_VERSION", "TORCH_INDEX_URL"}
    assert _raw()["services"]["migrate"]["build"]["args"]["TORCH_INDEX_URL"] == (
        "${TORCH_INDEX_URL:-}"
    ), "unset = empty = the Dockerfile's default (PyTorch's index for the flavour)"


def test_ganserve_environment_names_are_real_settings() -> None:
    known = setting_env_names() | NON_SETTING_ENV
    for name, service in _ganserve_services().items():
        unknown = set(_environment(service)) - known
        assert not unknown, f"{name}: not ganserve settings: {sorted(unknown)}"


# What each container may hold: the secrets it uses, no other.
SECRETS_NEEDED = {
    "postgres": {"POSTGRES_PASSWORD"},
    "redis": {"REDIS_PASSWORD"},
    "migrate": {"POSTGRES_PASSWORD"},
    "api": {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GANSERVE_API_KEYS"},
    "worker": {"POSTGRES_PASSWORD", "REDIS_PASSWORD"},
    "flower": {"REDIS_PASSWORD"},
}


def secrets_held(model: dict[str, Any]) -> dict[str, set[str]]:
    """For each service of an interpolated model, the secrets whose value it contains."""
    return {
        name: {secret for secret, value in DUMMY.items() if value in json.dumps(service)}
        for name, service in model["services"].items()
    }


def test_each_container_gets_only_the_secrets_it_needs() -> None:
    assert secrets_held(_model()) == SECRETS_NEEDED


def test_secrets_check_would_catch_a_leak() -> None:
    leaky = _model()
    leaky["services"]["worker"]["environment"]["GANSERVE_API_KEYS"] = DUMMY["GANSERVE_API_KEYS"]
    assert secrets_held(leaky)["worker"] == {"POSTGRES_PASSWORD", "REDIS_PASSWORD",
                                             "GANSERVE_API_KEYS"}  # fmt: skip


def test_env_files_never_hand_over_the_compose_secrets_file() -> None:
    """.env holds the secrets for interpolation: no container may read it whole."""
    for name, service in _services().items():
        env_files = service.get("env_file") or []
        paths = [item if isinstance(item, str) else item["path"] for item in env_files]
        assert ".env" not in paths and "./.env" not in paths, name
    for service in _ganserve_services().values():
        assert service["env_file"] == [{"path": "ganserve.env", "required": False}]


@pytest.mark.parametrize("name", sorted(GANSERVE_SERVICES))
def test_ganserve_environment_values_are_valid_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in setting_env_names():
        monkeypatch.delenv(variable, raising=False)
    env = _environment(_ganserve_services()[name])
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert settings.data_dir == Path("/data")
    assert settings.log_format == "json"
    assert settings.database_url == (
        f"postgresql+psycopg://ganserve:{DUMMY['POSTGRES_PASSWORD']}@postgres:5432/ganserve"
    )
    if name == "migrate":
        assert settings.redis_url is None and settings.api_keys == []
    else:
        assert settings.redis_url == f"redis://:{DUMMY['REDIS_PASSWORD']}@redis:6379/0"
        expected_keys = [DUMMY["GANSERVE_API_KEYS"]] if name == "api" else []
        assert settings.api_keys == expected_keys


def test_ganserve_commands_exist() -> None:
    for name, service in _ganserve_services().items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: write the command as a list"
        check_ganserve_args(command)  # raises on an unknown command or option


def test_command_check_would_catch_a_mistake() -> None:
    with pytest.raises(CommandError, match="serve"):
        check_ganserve_args(["serve"])
    with pytest.raises(CommandError, match="--gpus"):
        check_ganserve_args(["worker", "--gpus", "2"])


def test_commands_in_the_deployment_guide_exist() -> None:
    commands = list(ganserve_command_lines(DEPLOYMENT_DOC.read_text()))
    assert any(command[0] == "worker" for command in commands)
    for command in commands:
        check_ganserve_args(command)


# --- what the deployment relies on ------------------------------------------------------------


def test_redis_is_durable_private_and_password_protected() -> None:
    redis = _services()["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1] == "7"
    command = " ".join(redis["command"])
    for flag in (
        "--appendonly yes",
        "--appendfsync everysec",
        "--maxmemory-policy noeviction",
        f"--requirepass {DUMMY['REDIS_PASSWORD']}",
    ):
        assert flag in command
    assert "ports" not in redis, "the Redis port must not be published"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "PONG" in " ".join(redis["healthcheck"]["test"])
    assert _environment(redis)["REDISCLI_AUTH"] == DUMMY["REDIS_PASSWORD"]


def test_postgres_has_a_volume_and_a_healthcheck() -> None:
    postgres = _services()["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "ports" not in postgres
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert "pg_isready" in postgres["healthcheck"]["test"]
    env = _environment(postgres)
    assert env["POSTGRES_USER"] == env["POSTGRES_DB"] == "ganserve"


def test_migrate_runs_once_after_postgres() -> None:
    migrate = _services()["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_servers_wait_for_healthy_stores_and_migrations(name: str) -> None:
    depends_on = _services()[name]["depends_on"]
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"


def test_api_publishes_its_port_and_checks_readiness() -> None:
    api = _services()["api"]
    assert api["command"][:1] == ["api"]
    port = api["command"][api["command"].index("--port") + 1]
    assert api["ports"] == [f"8000:{port}"]
    assert _raw()["services"]["api"]["ports"] == ["${GANSERVE_PORT:-8000}:8000"]
    check = " ".join(api["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/readyz" in check


def test_api_and_worker_share_the_artifacts_volume() -> None:
    services = _services()
    api, worker = services["api"]["volumes"], services["worker"]["volumes"]
    assert "artifacts:/data" in api and "artifacts:/data" in worker
    assert "artifacts" in _model()["volumes"]


def test_worker_reserves_a_gpu_and_has_time_to_stop() -> None:
    worker = _services()["worker"]
    assert worker["command"][:1] == ["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert devices[0].get("count", 0) >= 1 or devices[0].get("device_ids")
    assert _seconds(worker["stop_grace_period"]) >= 60
    assert _environment(worker)["GANSERVE_WORKER_DEVICE"] == "cuda"
    # The image's healthcheck probes HTTP, which a worker does not serve.
    assert worker["healthcheck"].get("disable") is True or "test" in worker["healthcheck"]


def test_flower_only_in_the_monitoring_profile() -> None:
    services = _services()
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert any(f"redis://:{DUMMY['REDIS_PASSWORD']}@redis:6379" in arg for arg in flower["command"])
    published = [name for name, service in services.items() if service.get("ports")]
    assert sorted(published) == ["api", "flower"]


def test_every_named_volume_is_declared() -> None:
    model = _model()
    declared = set(model.get("volumes") or {})
    for name, service in model["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_duration_helper() -> None:
    assert _seconds("2m") == 120
    assert _seconds("1m30s") == 90
    with pytest.raises(AssertionError):
        _seconds("2 minutes")
