"""Every declared training field shows up on every surface, read from the one declaration.

The declaration is `TrainConfig` in gan/config.py (`CONFIG_FIELDS`). Walked here: the API's
OpenAPI schema (TrainSpec, nested `noise.*` and `betas.*` included), the HTTP round trip
(spec -> config -> spec), the options and `--help` of `ganserve train`, and the README's
field table. The web form, built from the schema, is walked in a real browser by
tests/browser/test_train_form.py. A field added to a declaration reaches the schema and
the CLI without another line (`test_a_new_field_reaches_every_surface`).

The README table is generated: `GANSERVE_UPDATE_DOCS=1 pytest tests/test_config_surfaces.py`
rewrites it after a change to the declaration.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ganserve.cli import engine
from ganserve.cli.main import app as cli_app
from ganserve.gan.config import (
    CONFIG_FIELDS,
    RESUMABLE_CHANGES,
    ConfigField,
    TrainConfig,
    declared_fields,
    setting,
)
from ganserve.service import app as service_app
from ganserve.service.jobs.spec import TrainSpec, spec_model
from ganserve.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TABLE_START = "<!-- training-fields:start"
TABLE_END = "<!-- training-fields:end -->"
UNUSED_REDIS = "redis://127.0.0.1:1/0"  # the app's lifespan (which would connect) never runs
JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def flag(declared: ConfigField) -> str:
    return "--" + declared.name.replace("_", "-")


def squash(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    document: dict[str, Any] = service_app.create_app(Settings(redis_url=UNUSED_REDIS)).openapi()
    return document


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        found: dict[str, Any] = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
        return found
    return schema


def schema_of(document: dict[str, Any], api_name: str) -> tuple[dict[str, Any], Any]:
    """(the field's schema, its default) at a dotted API name: noise.dim, betas.0."""
    node = resolve(document, document["components"]["schemas"]["TrainSpec"])
    first, *rest = api_name.split(".")
    prop = node["properties"][first]
    default = prop.get("default")
    for part in rest:
        parent = resolve(document, prop)
        if part.isdigit():
            # The document writes tuples as arrays whose items are the union of the members
            # (service/openapi.py: no prefixItems), one member per distinct schema.
            items = parent["items"]
            members = items.get("anyOf", [items])
            prop, default = members[min(int(part), len(members) - 1)], default[int(part)]
        else:
            prop = parent["properties"][part]
            default = prop.get("default")
    return resolve(document, prop), default


def test_declarations_are_complete() -> None:
    names = [f.name for f in CONFIG_FIELDS]
    assert names == list(TrainConfig.__dataclass_fields__)
    assert len({f.api_name for f in CONFIG_FIELDS}) == len(CONFIG_FIELDS)
    for declared in CONFIG_FIELDS:
        assert declared.help.endswith(".") and declared.label, declared.name
        assert getattr(TrainConfig(), declared.name) == declared.default
        if declared.type in (int, float):
            assert declared.low is not None and declared.high is not None, declared.name
    assert {f.name for f in CONFIG_FIELDS if f.resumable} == RESUMABLE_CHANGES
    assert {"steps", "device", "on_alarm"} <= RESUMABLE_CHANGES
    assert not {"architecture", "loss", "seed", "noise_dim"} & RESUMABLE_CHANGES


@pytest.mark.parametrize("declared", CONFIG_FIELDS, ids=lambda f: f.name)
def test_the_api_schema_shows_the_field(openapi: dict[str, Any], declared: ConfigField) -> None:
    schema, default = schema_of(openapi, declared.api_name)
    if declared.optional:  # `str | None`: anyOf [the type, null]
        assert {"type": "null"} in schema["anyOf"]
        schema = {**schema, **next(s for s in schema["anyOf"] if s != {"type": "null"})}
    assert schema["type"] == JSON_TYPES[declared.type]
    assert schema["title"] == declared.label
    assert schema["description"] == declared.help
    assert default == declared.default
    assert schema.get("enum") == (list(declared.choices) if declared.choices else None)
    low_key = "exclusiveMinimum" if declared.low_open else "minimum"
    # exact, integers included: 2**63 - 1, not FastAPI's float 9.223372036854776e18 (= 2**63)
    assert schema.get(low_key) == declared.low
    assert schema.get("maximum") == declared.high
    assert schema.get("x-basic", False) == declared.basic


def test_the_api_schema_has_nothing_else(openapi: dict[str, Any]) -> None:
    spec = openapi["components"]["schemas"]["TrainSpec"]
    top_level = {f.api_name.split(".")[0] for f in CONFIG_FIELDS}
    assert list(spec["properties"]) == ["name", *dict.fromkeys(f.api_name.split(".")[0]
                                                              for f in CONFIG_FIELDS)]  # fmt: skip
    assert set(spec["properties"]) == {"name"} | top_level
    assert spec["additionalProperties"] is False
    noise = resolve(openapi, spec["properties"]["noise"])
    assert set(noise["properties"]) == {"dim", "distribution"}
    assert noise["additionalProperties"] is False
    example = spec["examples"][0]
    assert TrainSpec.model_validate(example).to_config() == TrainConfig()


def _other_value(declared: ConfigField) -> Any:
    """A valid value that is not the default."""
    if declared.type is bool:
        return not declared.default
    if declared.choices:
        return (
            declared.choices[-1]
            if declared.default != declared.choices[-1]
            else declared.choices[0]
        )
    if declared.type is int:
        assert declared.high is not None
        return int(declared.high) if declared.default != declared.high else int(declared.high) - 1
    if declared.type is float:
        assert declared.high is not None
        return declared.high if declared.default != declared.high else declared.high / 2
    others = {"dataset": "cifar10", "device": "cuda:1", "dataset_b": "digits-on-colour"}
    return others[declared.name]


def test_every_field_goes_through_the_api_shape_and_back() -> None:
    config = TrainConfig(**{f.name: _other_value(f) for f in CONFIG_FIELDS})
    assert all(getattr(config, f.name) != f.default for f in CONFIG_FIELDS)
    spec = TrainSpec.from_config(config, "echo")
    assert spec.to_config() == config
    dumped = spec.model_dump()
    assert dumped["noise"] == {"dim": config.noise_dim, "distribution": config.noise_distribution}
    assert dumped["betas"] == (config.beta1, config.beta2)
    # an old stored config without some fields echoes their defaults
    old = {k: v for k, v in config.to_dict().items() if k not in ("gp_lambda", "on_alarm")}
    echoed = TrainSpec.from_config(old, "old").to_config()
    assert (echoed.gp_lambda, echoed.on_alarm, echoed.steps) == (10.0, "warn", config.steps)


def test_the_cli_has_an_option_per_field() -> None:
    command = typer.main.get_command(cli_app).commands["train"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    for declared in CONFIG_FIELDS:
        param = params[declared.name]
        assert flag(declared) in param.opts, declared.name
        assert param.default == declared.default, declared.name
        assert param.help.startswith(declared.help), declared.name
        for choice in declared.choices:
            assert choice in param.metavar
    assert set(params) == {"out", "data_dir"} | {f.name for f in CONFIG_FIELDS}


def test_the_cli_help_lists_every_field() -> None:
    result = CliRunner().invoke(cli_app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = squash(re.sub(r"[│╭╮╰╯─]", " ", result.output))
    for declared in CONFIG_FIELDS:
        assert flag(declared) in text, declared.name
        assert squash(declared.help) in text, declared.name


def test_cli_options_reach_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[TrainConfig] = []

    def stop_at_load(name: str, data_dir: Path) -> None:
        seen.append(captured["config"])
        raise typer.Exit(0)

    captured: dict[str, TrainConfig] = {}
    real = engine.TrainConfig

    def capture(**values: Any) -> TrainConfig:
        captured["config"] = real(**values)
        return captured["config"]

    monkeypatch.setattr(engine, "TrainConfig", capture)
    monkeypatch.setattr(engine, "load_dataset", stop_at_load)
    args = ["train", "--out", str(tmp_path), "--gp-lambda", "2.5", "--eval-samples", "64",
            "--on-alarm", "stop", "--noise-distribution", "uniform", "--beta1", "0.9",
            "--conditional", "--alarm-fd-patience", "7"]  # fmt: skip
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert seen == [
        TrainConfig(
            gp_lambda=2.5,
            eval_samples=64,
            on_alarm="stop",
            noise_distribution="uniform",
            beta1=0.9,
            conditional=True,
            alarm_fd_patience=7,
        )  # fmt: skip
    ]


def _table_cell(declared: ConfigField) -> str:
    if declared.choices:
        return ", ".join(f"`{c}`" for c in declared.choices)
    if declared.type is bool:
        return "`true`, `false`"
    if declared.low is None or declared.high is None:
        return "see meaning"
    low = f"{declared.low:g}" if declared.type is float else f"{int(declared.low):,}"
    high = f"{declared.high:g}" if declared.type is float else f"{int(declared.high):,}"
    return f"{'(' if declared.low_open else '['}{low}, {high}]"


def fields_table(fields: tuple[ConfigField, ...] = CONFIG_FIELDS) -> str:
    """The README's table of the training fields, generated from the declaration."""
    rows = [
        "| spec field | `ganserve train` | default | valid values | resumable | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for f in fields:
        rows.append(
            f"| `{f.api_name}` | `{flag(f)}` | `{json.dumps(f.default)}` | {_table_cell(f)} "
            f"| {'yes' if f.resumable else ''} | {f.help.replace('|', chr(92) + '|')} |"
        )
    return "\n".join(rows)


def test_the_readme_table_is_the_declaration() -> None:
    text = README.read_text()
    start = text.index(TABLE_START)
    body_start = text.index("\n", start) + 1
    end = text.index(TABLE_END)
    expected = fields_table() + "\n"
    if os.environ.get("GANSERVE_UPDATE_DOCS") == "1":
        README.write_text(text[:body_start] + expected + text[end:])
        text = README.read_text()
        end = text.index(TABLE_END)
    assert text[body_start:end] == expected, (
        "README's field table differs from gan/config.py; regenerate it with "
        "GANSERVE_UPDATE_DOCS=1 pytest tests/test_config_surfaces.py"
    )


@dataclass(frozen=True)
class _WithCycleLoss(TrainConfig):
    """TrainConfig plus one field, as a CycleGAN change would add it."""

    cycle_weight: float = setting(
        10.0, "cyclegan only: weight of the cycle-consistency loss.",
        label="Cycle loss weight", low=0.0, high=100.0,
    )  # fmt: skip


def test_a_new_field_reaches_every_surface() -> None:
    fields = declared_fields(_WithCycleLoss)
    assert fields[-1].name == "cycle_weight" and fields[:-1] == CONFIG_FIELDS
    # the API schema
    schema = spec_model(fields, "ExtendedSpec").model_json_schema()["properties"]["cycle_weight"]
    assert schema["title"] == "Cycle loss weight" and schema["maximum"] == 100.0
    assert schema["description"] == "cyclegan only: weight of the cycle-consistency loss."
    # the CLI
    command = typer.Typer()

    def train(**options: Any) -> None:
        del options

    command.command()(engine.with_config_options(train, fields))
    command.command("other")(lambda: None)
    result = CliRunner().invoke(command, ["train", "--help"], env={"COLUMNS": "400"})
    assert "--cycle-weight" in result.output and "cycle-consistency" in result.output
    # the docs
    assert "| `cycle_weight` | `--cycle-weight` | `10.0` | [0, 100] |" in fields_table(fields)
