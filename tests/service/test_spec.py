"""TrainSpec: defaults, conversion to TrainConfig (field names mapped back), dataset checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from ganserve.gan.config import TrainConfig
from ganserve.gan.data import ImageDataset, packed_dataset_path, save_packed
from ganserve.gan.errors import ConfigError, DatasetError
from ganserve.service.jobs.spec import EXAMPLE_SPEC, TrainSpec, check_against_dataset


def test_defaults_are_the_reference_model_and_match_train_config() -> None:
    spec = TrainSpec()
    assert spec.to_config() == TrainConfig()
    assert spec.model_name == "digits-mlp"
    assert TrainSpec(dataset="cifar10", architecture="dcgan").model_name == "cifar10-dcgan"
    assert TrainSpec(name="mine").model_name == "mine"
    assert len(TrainSpec(dataset="x" * 64).model_name) == 64


def test_the_example_is_a_valid_spec() -> None:
    assert TrainSpec.model_validate(EXAMPLE_SPEC).to_config().steps == 2000


def test_nested_fields_map_to_the_flat_config_and_back() -> None:
    spec = TrainSpec.model_validate(
        {"noise": {"dim": 64, "distribution": "uniform"}, "betas": [0.9, 0.99], "seed": 3}
    )
    config = spec.to_config()
    assert (config.noise_dim, config.noise_distribution) == (64, "uniform")
    assert (config.beta1, config.beta2, config.seed) == (0.9, 0.99, 3)
    echoed = TrainSpec.from_config(config.to_dict(), "named")
    assert echoed == spec.model_copy(update={"name": "named"})
    assert TrainSpec.from_config(config, "named") == echoed


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"noise": {"dim": 0}}, "noise.dim", "between 1 and 4096"),
        ({"noise": {"distribution": "gamma"}}, "noise.distribution", "normal, uniform"),
        ({"betas": [-0.1, 0.9]}, "betas.0", "[0.0, 0.9999]"),
        ({"betas": [0.5, 1.0]}, "betas.1", "[0.0, 0.9999]"),
        ({"architecture": "vae"}, "architecture", "valid choices are: mlp, dcgan"),
        ({"n_critic": 50}, "n_critic", "between 1 and 20"),
        ({"ema": 1.0}, "ema", "0.99999"),
    ],
)
def test_config_errors_name_the_spec_field(
    body: dict[str, object], field: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        TrainSpec.model_validate(body).to_config()
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ") and needle in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [{"unknown": 1}, {"steps": "10"}, {"steps": 1.5}, {"conditional": 1}, {"betas": [0.5]},
     {"name": "UPPER"}, {"name": "-lead"}, {"name": "x" * 65}],
)  # fmt: skip
def test_types_shape_and_name_are_checked_by_the_model(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TrainSpec.model_validate(body)


def test_floats_accept_integers() -> None:
    assert TrainSpec.model_validate({"lr_g": 1, "betas": [0, 0]}).to_config().lr_g == 1.0


def _upload(data_dir: Path, name: str, size: int, count: int, classes: tuple[str, ...]) -> None:
    dataset = ImageDataset(
        name,
        torch.zeros((count, 3, size, size), dtype=torch.uint8),
        torch.arange(count, dtype=torch.int64) % len(classes),
        classes,
    )
    save_packed(dataset, packed_dataset_path(data_dir, name))


def test_dataset_checks(tmp_path: Path) -> None:
    info = check_against_dataset(TrainConfig(), tmp_path)
    assert info["size"] == 1797
    with pytest.raises(DatasetError, match="fashion-mnist"):
        check_against_dataset(TrainConfig(dataset="fashion-mnist"), tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        check_against_dataset(TrainConfig(dataset="nope"), tmp_path)
    with pytest.raises(ConfigError, match="1797") as caught:
        check_against_dataset(TrainConfig(batch_size=1798), tmp_path)
    assert caught.value.field == "batch_size"
    check_against_dataset(TrainConfig(batch_size=1797, conditional=True), tmp_path)

    _upload(tmp_path, "rgb12", size=12, count=8, classes=("all",))
    with pytest.raises(ConfigError) as caught:
        check_against_dataset(
            TrainConfig(dataset="rgb12", batch_size=8, conditional=True), tmp_path
        )
    assert caught.value.field == "conditional"
    with pytest.raises(ConfigError) as caught:
        check_against_dataset(
            TrainConfig(dataset="rgb12", batch_size=8, architecture="dcgan"), tmp_path
        )
    assert caught.value.field == "architecture" and "12" in str(caught.value)
    check_against_dataset(TrainConfig(dataset="rgb12", batch_size=8), tmp_path)

    _upload(tmp_path, "big", size=96, count=2, classes=("a", "b"))
    with pytest.raises(ConfigError, match="mlp supports at most") as caught:
        check_against_dataset(TrainConfig(dataset="big", batch_size=2), tmp_path)
    assert caught.value.field == "architecture"


def test_dataset_check_errors_use_the_spec_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gan's one dataset check names config fields; the API renames them by the declaration."""
    from ganserve.service.jobs import spec as spec_module

    def refuse(config: TrainConfig, info: object) -> None:
        raise ConfigError("noise_dim", "too long for this dataset")

    monkeypatch.setattr(spec_module, "check_compatible", refuse)
    with pytest.raises(ConfigError) as caught:
        check_against_dataset(TrainConfig(), tmp_path)
    assert caught.value.field == "noise.dim"
    assert str(caught.value) == "noise.dim: too long for this dataset"
    assert spec_module.API_NAMES["beta2"] == "betas.1"
