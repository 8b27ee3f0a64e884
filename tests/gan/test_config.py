from __future__ import annotations

from typing import Any

import pytest

from ganserve.gan.config import ModelSpec, TrainConfig
from ganserve.gan.errors import ConfigError

INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"architecture": "resnet"}, "architecture", "valid choices are: mlp, dcgan"),
    ({"loss": "lsgan"}, "loss", "valid choices are: bce, wgan-gp, hinge"),
    ({"noise_distribution": "cauchy"}, "noise_distribution", "valid choices are: normal, uniform"),
    ({"steps": 0}, "steps", "between 1 and 1000000"),
    ({"steps": -5}, "steps", "between 1 and 1000000"),
    ({"steps": 2.5}, "steps", "must be an integer"),
    ({"batch_size": 1}, "batch_size", "between 2 and 4096"),
    ({"noise_dim": 0}, "noise_dim", "between 1 and 4096"),
    ({"lr_g": 0.0}, "lr_g", "must be in (0.0, 1.0]"),
    ({"lr_d": float("nan")}, "lr_d", "must be in (0.0, 1.0]"),
    ({"beta1": 1.0}, "beta1", "must be in [0.0, 0.9999]"),
    ({"n_critic": 0}, "n_critic", "between 1 and 20"),
    ({"ema": 1.0}, "ema", "must be in [0.0, 0.99999]"),
    ({"checkpoint_every": 0}, "checkpoint_every", "between 1 and"),
    ({"device": "tpu"}, "device", "valid choices are: auto, cpu, cuda, cuda:N"),
    ({"precision": "fp16"}, "precision", "valid choices are: fp32, bf16"),
    ({"conditional": "yes"}, "conditional", "must be true or false"),
    ({"dataset": ""}, "dataset", "non-empty"),
]


@pytest.mark.parametrize(("changes", "field", "message"), INVALID)
def test_invalid_values_name_the_field_and_choices(
    changes: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**changes)
    assert info.value.field == field
    assert message in str(info.value)
    assert str(info.value).startswith(f"{field}: ")


def test_unknown_field_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown field; valid fields are: .*architecture"):
        TrainConfig.from_dict({"archtecture": "mlp"})


def test_round_trip_and_defaults_are_the_reference_model() -> None:
    config = TrainConfig()
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert (config.architecture, config.loss, config.noise_dim, config.batch_size) == (
        "mlp", "bce", 100, 128,
    )  # fmt: skip
    assert (config.lr_g, config.beta1, config.beta2) == (2e-4, 0.5, 0.999)
    keras = config.replace(lr_g=1e-3, lr_d=1e-3, beta1=0.9)
    assert keras.beta1 == 0.9


def test_model_spec_image_sizes() -> None:
    with pytest.raises(ConfigError, match="image_size: dcgan supports square images of 8, 14"):
        ModelSpec("dcgan", 1, 12, 100, "normal")
    assert ModelSpec("mlp", 1, 12, 100, "normal").image_shape == (1, 12, 12)
    with pytest.raises(ConfigError, match="mlp supports at most"):
        ModelSpec("mlp", 3, 128, 100, "normal")
    spec = ModelSpec("dcgan", 3, 32, 64, "uniform", 10, 16, tuple("abcdefghij"))
    assert ModelSpec.from_dict(spec.to_dict()) == spec
