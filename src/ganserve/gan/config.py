"""The frozen training configuration and the model description that rebuilds a network.

Both are plain dataclasses so that a checkpoint (or the JSON next to an exported generator)
can rebuild everything from its own contents: `TrainConfig.from_dict(ckpt["config"])`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ganserve.gan.errors import ConfigError

ARCHITECTURES = ("mlp", "dcgan")
LOSS_NAMES = ("bce", "wgan-gp", "hinge")
NOISE_DISTRIBUTIONS = ("normal", "uniform")
PRECISIONS = ("fp32", "bf16")
ALARM_ACTIONS = ("warn", "stop", "rollback")
MAX_EVAL_SAMPLES = 50_000
# dcgan grows from a 4x4 or 7x7 seed by doubling, so sizes are 4·2^k or 7·2^k within 8..64 px.
DCGAN_IMAGE_SIZES = (8, 14, 16, 28, 32, 56, 64)
MLP_MAX_PIXELS = 64 * 64 * 3

# Documented upper bounds: large enough for real work, small enough that a typo cannot
# allocate the machine away.
MAX_STEPS = 1_000_000
MAX_BATCH_SIZE = 4096
MAX_NOISE_DIM = 4096
MAX_N_CRITIC = 20
MAX_KEEP_CHECKPOINTS = 100


def _choice(field_name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            field_name, f"invalid value {value!r}; valid choices are: {', '.join(choices)}"
        )


def _int_range(field_name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(field_name, f"must be between {low} and {high}, got {value}")


def _float_range(
    field_name: str, value: object, low: float, high: float, *, low_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field_name, f"must be a number, got {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        bracket = "(" if low_open else "["
        raise ConfigError(field_name, f"must be in {bracket}{low}, {high}], got {value}")


def _validate_device(value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError("device", f"must be a string, got {value!r}")
    if value in ("auto", "cpu", "cuda"):
        return
    if value.startswith("cuda:") and value[5:].isdigit():
        return
    raise ConfigError(
        "device", f"invalid value {value!r}; valid choices are: auto, cpu, cuda, cuda:N"
    )


def _from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            unknown[0], f"unknown field; valid fields are: {', '.join(sorted(names))}"
        )
    return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults: the reference MLP GAN on digits."""

    dataset: str = "digits"  # a built-in name (digits, mnist, fashion-mnist, cifar10) or upload id
    architecture: str = "mlp"  # one of ARCHITECTURES
    loss: str = "bce"  # one of LOSS_NAMES
    conditional: bool = False  # cGAN: class labels enter G (concatenated) and D (projection)
    noise_dim: int = 100  # length of z
    noise_distribution: str = "normal"  # N(0, 1) or U(-1, 1)
    steps: int = 2000  # generator updates
    batch_size: int = 128  # real images per discriminator step
    lr_g: float = 2e-4  # Adam learning rate of G
    lr_d: float = 2e-4  # Adam learning rate of D
    beta1: float = 0.5  # Adam beta1 (Keras' reference: 0.9)
    beta2: float = 0.999  # Adam beta2
    n_critic: int = 1  # discriminator steps per generator step (5 is usual for wgan-gp)
    gp_lambda: float = 10.0  # gradient-penalty weight for wgan-gp
    ema: float = 0.999  # decay of the served EMA generator per step; 0 serves G as is
    checkpoint_every: int = 500  # steps between checkpoints (the last step always writes one)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    sample_every: int = 500  # steps between fixed-noise preview grids
    seed: int = 0  # seeds weights, data order and noise
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 (autocast, CUDA only)
    dcgan_width: int = 64  # channels of dcgan's widest-resolution layer; doubles per downsample
    compile: bool = False  # torch.compile G and D (slow to start; pays off on long CUDA runs)
    eval_every: int = 500  # steps between quality evaluations (0 = never; the end always is)
    eval_samples: int = 1000  # generated images per evaluation
    on_alarm: str = "warn"  # warn | stop (fail the job) | rollback (finish with the best model)
    alarm_coverage: float = 0.8  # mode-collapse alarm below this fraction of classes covered
    alarm_fd_patience: int = 3  # divergence alarm after this many Fréchet-distance rises in a row

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError("dataset", "must be a non-empty string")
        _choice("architecture", self.architecture, ARCHITECTURES)
        _choice("loss", self.loss, LOSS_NAMES)
        if not isinstance(self.conditional, bool):
            raise ConfigError("conditional", f"must be true or false, got {self.conditional!r}")
        _int_range("noise_dim", self.noise_dim, 1, MAX_NOISE_DIM)
        _choice("noise_distribution", self.noise_distribution, NOISE_DISTRIBUTIONS)
        _int_range("steps", self.steps, 1, MAX_STEPS)
        _int_range("batch_size", self.batch_size, 2, MAX_BATCH_SIZE)
        _float_range("lr_g", self.lr_g, 0.0, 1.0, low_open=True)
        _float_range("lr_d", self.lr_d, 0.0, 1.0, low_open=True)
        _float_range("beta1", self.beta1, 0.0, 0.9999)
        _float_range("beta2", self.beta2, 0.0, 0.9999)
        _int_range("n_critic", self.n_critic, 1, MAX_N_CRITIC)
        _float_range("gp_lambda", self.gp_lambda, 0.0, 1000.0)
        _float_range("ema", self.ema, 0.0, 0.99999)
        _int_range("checkpoint_every", self.checkpoint_every, 1, MAX_STEPS)
        _int_range("keep_checkpoints", self.keep_checkpoints, 1, MAX_KEEP_CHECKPOINTS)
        _int_range("sample_every", self.sample_every, 1, MAX_STEPS)
        _int_range("seed", self.seed, 0, 2**63 - 1)
        _validate_device(self.device)
        _choice("precision", self.precision, PRECISIONS)
        _int_range("dcgan_width", self.dcgan_width, 4, 512)
        if not isinstance(self.compile, bool):
            raise ConfigError("compile", f"must be true or false, got {self.compile!r}")
        _int_range("eval_every", self.eval_every, 0, MAX_STEPS)
        _int_range("eval_samples", self.eval_samples, 2, MAX_EVAL_SAMPLES)
        _choice("on_alarm", self.on_alarm, ALARM_ACTIONS)
        _float_range("alarm_coverage", self.alarm_coverage, 0.0, 1.0)
        _int_range("alarm_fd_patience", self.alarm_fd_patience, 1, 100)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        result: TrainConfig = _from_dict(cls, data)
        return result

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ModelSpec:
    """What it takes to rebuild G (and D) without the training config: stored with every export."""

    architecture: str
    channels: int  # C of the (C, H, W) images
    image_size: int  # H == W
    noise_dim: int
    noise_distribution: str
    num_classes: int = 0  # > 0 for conditional models
    dcgan_width: int = 64
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _choice("architecture", self.architecture, ARCHITECTURES)
        _int_range("channels", self.channels, 1, 4)
        _int_range("noise_dim", self.noise_dim, 1, MAX_NOISE_DIM)
        _choice("noise_distribution", self.noise_distribution, NOISE_DISTRIBUTIONS)
        _int_range("num_classes", self.num_classes, 0, 10_000)
        if self.architecture == "dcgan" and self.image_size not in DCGAN_IMAGE_SIZES:
            raise ConfigError(
                "image_size",
                f"dcgan supports square images of {', '.join(map(str, DCGAN_IMAGE_SIZES))} px, "
                f"got {self.image_size}; use architecture 'mlp' or resize the dataset",
            )
        _int_range("image_size", self.image_size, 2, 1024)
        if self.channels * self.image_size**2 > MLP_MAX_PIXELS and self.architecture == "mlp":
            raise ConfigError(
                "image_size", f"mlp supports at most {MLP_MAX_PIXELS} values per image"
            )
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError("class_names", "must have one name per class")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        data = dict(data)
        data["class_names"] = tuple(data.get("class_names", ()))
        result: ModelSpec = _from_dict(cls, data)
        return result
