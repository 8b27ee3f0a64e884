"""The training spec: the body of `POST /v1/jobs` (DESIGN §5), built from gan's declaration.

Every field but `name` comes from `CONFIG_FIELDS` (gan/config.py): its type, default,
description, label (the schema's `title`), bounds and choices (`minimum`, `maximum`,
`enum`) and its HTTP name: `api="noise.dim"` nests `noise_dim` in a `noise` object,
`api="betas.0"` makes `beta1` the first item of the `betas` list. Nothing here names a
training field, so a field declared in gan/ appears in the API, its OpenAPI schema and the
web page's form (which is built from that schema).

The pydantic model checks types and shape (unknown fields, nesting); `TrainConfig` checks
values, so the valid ranges and choices live in one place. Its `ConfigError` names a config
field (`noise_dim`), which `to_config` renames to the spec's (`noise.dim`).

`check_against_dataset` then runs gan's one dataset check (gan/compat.py), at submit time,
on what the dataset's file headers say: an unknown or missing dataset, a batch larger than
the dataset, a conditional model on unlabelled data, an architecture that does not fit the
image size fail here rather than on the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    StrictStr,
    create_model,
    field_validator,
)

from ganserve.gan.compat import DatasetInfo, check_compatible
from ganserve.gan.config import API_GROUPS, CONFIG_FIELDS, ConfigField, TrainConfig
from ganserve.gan.data import describe_dataset
from ganserve.gan.errors import ConfigError, DatasetError
from ganserve.gan.translation.pairs import check_pair_shapes, pair_names
from ganserve.service.integers import INTEGRAL
from ganserve.store.errors import InvalidValueError
from ganserve.store.names import MODEL_NAME_PATTERN, validate_model_name

MAX_NAME_LENGTH = 64
# TrainConfig field -> the name a client uses ("noise_dim" -> "noise.dim").
API_NAMES = {f.name: f.api_name for f in CONFIG_FIELDS}
_STRICT: dict[type, Any] = {bool: StrictBool, float: StrictFloat, str: StrictStr}


def _schema_hints(declared: ConfigField) -> dict[str, Any]:
    """Bounds and choices for the OpenAPI schema (TrainConfig does the checking)."""
    hints: dict[str, Any] = {}
    if declared.choices:
        hints["enum"] = list(declared.choices)
    if declared.low is not None:
        hints["exclusiveMinimum" if declared.low_open else "minimum"] = declared.low
    if declared.high is not None:
        hints["maximum"] = declared.high
    if declared.pattern is not None:
        hints["pattern"] = declared.pattern
    if declared.basic:
        hints["x-basic"] = True  # the web form shows it before "More settings"
    return hints


def _annotated(declared: ConfigField) -> Any:
    """The pydantic type of one declared field, with its schema text.

    Integers also take an integral float (66.0), as the schema's `type: integer` does.
    """
    info = Field(
        title=declared.label, description=declared.help, json_schema_extra=_schema_hints(declared)
    )
    if declared.type is int:
        kind: Any = Annotated[int, info, Strict(), INTEGRAL]
        return kind | None if declared.optional else kind
    kind = _STRICT[declared.type]
    if declared.optional:
        kind = kind | None
    return Annotated[kind, info]


def _spec_fields(fields: Sequence[ConfigField]) -> dict[str, Any]:
    """create_model's field definitions, in declaration order, nested where `api` says."""
    groups: dict[str, list[ConfigField]] = {}
    for declared in fields:
        groups.setdefault(declared.api_name.split(".")[0], []).append(declared)
    definitions: dict[str, Any] = {}
    for key, members in groups.items():
        if members[0].api is None:  # a plain top-level field
            definitions[key] = (_annotated(members[0]), members[0].default)
            continue
        description = API_GROUPS[key]
        inner = [m.api_name.split(".", 1)[1] for m in members]
        if all(part.isdigit() for part in inner):  # a fixed-length list: betas.0, betas.1
            ordered = [m for _, m in sorted(zip(map(int, inner), members, strict=True))]
            items: Any = tuple.__class_getitem__(tuple(_annotated(m) for m in ordered))
            default = tuple(m.default for m in ordered)
            definitions[key] = (items, Field(default=default, description=description))
            continue
        nested = create_model(  # type: ignore[call-overload]
            f"{key.capitalize()}Spec",
            __config__=ConfigDict(extra="forbid"),
            __doc__=description,
            **{name: (_annotated(m), m.default) for name, m in zip(inner, members, strict=True)},
        )
        definitions[key] = (nested, Field(default_factory=nested, description=description))
    return definitions


def _api_value(values: dict[str, Any], declared: ConfigField) -> Any:
    """The value of a declared field in a spec's nested dump: values["noise"]["dim"]."""
    value: Any = values
    for part in declared.api_name.split("."):
        value = value[int(part)] if part.isdigit() else value[part]
    return value


def _api_shape(config: dict[str, Any]) -> dict[str, Any]:
    """A flat TrainConfig dict in the API's nested shape; absent fields get their default."""
    result: dict[str, Any] = {}
    for declared in CONFIG_FIELDS:
        value = config.get(declared.name, declared.default)
        *parents, last = declared.api_name.split(".")
        target: Any = result
        for i, part in enumerate(parents):
            nested_list = (parents + [last])[i + 1].isdigit()
            target = target.setdefault(part, [] if nested_list else {})
        if last.isdigit():
            target.extend([None] * (int(last) + 1 - len(target)))
            target[int(last)] = value
        else:
            target[last] = value
    return result


EXAMPLE_SPEC: dict[str, Any] = {"name": "digits-gan", **_api_shape(TrainConfig().to_dict())}


def _when(field: str, value: object, then: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema: if `field` is sent as `value`, the other properties must match `then`."""
    return {
        "if": {"properties": {field: {"const": value}}, "required": [field]},
        "then": {"properties": then},
    }


# The rules over several fields that hold whatever the dataset, as the schema states them;
# the server's checks: gan.compat.check_compatible (bf16 on the CPU) and _check_pair below
# (cyclegan takes no labels). Rules that need the dataset (its size, labels, image size)
# cannot be stated here: the 422 names the field.
COMBINATION_RULES = (
    _when("precision", "bf16", {"device": {"not": {"const": "cpu"}}}),
    _when("architecture", "cyclegan", {"conditional": {"const": False}}),
)


class _SpecBase(BaseModel):
    """A training job: what to train on, which GAN, and for how long."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [EXAMPLE_SPEC], "allOf": list(COMBINATION_RULES)},
    )

    name: StrictStr | None = Field(
        default=None,
        title="Model name",
        description=(
            "Name of the model this job registers a version of; 1-64 characters of lowercase "
            "letters, digits, '.', '_' and '-'. Default: '<dataset>-<architecture>'."
        ),
        json_schema_extra={"pattern": MODEL_NAME_PATTERN, "x-basic": True},
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_model_name(value)
        except InvalidValueError as error:
            raise ValueError(error.message) from None

    @property
    def model_name(self) -> str:
        """The explicit name, or '<dataset>-<architecture>' cut to 64 characters."""
        values = self.model_dump()
        return self.name or f"{values['dataset']}-{values['architecture']}"[:MAX_NAME_LENGTH]

    def to_config(self) -> TrainConfig:
        """The validated TrainConfig; ConfigError naming the spec field if a value is invalid."""
        values = self.model_dump()
        try:
            return TrainConfig(**{f.name: _api_value(values, f) for f in CONFIG_FIELDS})
        except ConfigError as error:
            raise _renamed(error) from None

    @classmethod
    def from_config(cls, config: TrainConfig | dict[str, Any], name: str) -> TrainSpec:
        """The spec in the API's nested shape for a stored config (the job's echo)."""
        values = config.to_dict() if isinstance(config, TrainConfig) else config
        return cls.model_validate({"name": name, **_api_shape(values)})


def spec_model(fields: Sequence[ConfigField], name: str = "TrainSpec") -> type[_SpecBase]:
    """The HTTP body model of these declared fields (`name` first, then each field)."""
    model: type[_SpecBase] = create_model(
        name, __base__=_SpecBase, __doc__=_SpecBase.__doc__, __module__=__name__,
        **_spec_fields(fields),
    )  # fmt: skip
    return model


if TYPE_CHECKING:
    TrainSpec = _SpecBase
else:
    TrainSpec = spec_model(CONFIG_FIELDS)


def _renamed(error: ConfigError) -> ConfigError:
    return ConfigError(API_NAMES.get(error.field, error.field), error.message)


def check_against_dataset(config: TrainConfig, data_dir: Path) -> dict[str, Any]:
    """Check what depends on the dataset; its description, or DatasetError / ConfigError.

    Reads only file headers: the dataset's images are not loaded.
    """
    if config.architecture == "cyclegan":
        return _check_pair(config, data_dir)
    description = describe_dataset(config.dataset, data_dir)  # DatasetError: unknown dataset
    if not description["available"]:
        raise DatasetError(description["missing_files_hint"])
    try:
        check_compatible(config, DatasetInfo.from_description(description))
    except ConfigError as error:
        raise _renamed(error) from None
    return description


def _check_pair(config: TrainConfig, data_dir: Path) -> dict[str, Any]:
    """cyclegan: both domains exist and can be reconciled (gan.translation.pairs)."""
    names = pair_names(config.dataset, config.dataset_b)
    found = []
    for field, name in zip(("dataset", "dataset_b"), names, strict=True):
        try:
            description = describe_dataset(name, data_dir)
        except DatasetError as error:
            raise ConfigError(field, str(error)) from None
        if not description["available"]:
            raise ConfigError(field, str(description["missing_files_hint"]))
        found.append(description)
    a, b = ((d["name"], d["size"], d["channels"], d["image_size"]) for d in found)
    check_pair_shapes(a, b, config.batch_size)
    if config.conditional:
        raise ConfigError("conditional", "cyclegan translates images; it takes no class labels")
    return found[0]
