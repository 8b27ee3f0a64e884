"""The training configuration, declared once, and the model description that rebuilds a network.

`TrainConfig` is the one declaration of every training field. Each field is a line
`name: type = setting(default, help, label=..., bounds or choices, ...)`, and everything
else is read from it (`CONFIG_FIELDS`):

- the checks of `TrainConfig` itself (bounds, choices, types; messages name the field);
- `RESUMABLE_CHANGES`: the fields a resumed run may change (`resumable=True`);
- the HTTP body of `POST /v1/jobs` with its OpenAPI schema (`service/jobs/spec.py` builds
  the pydantic model from `CONFIG_FIELDS`; `api="noise.dim"` nests a field in the HTTP
  shape, `api="betas.0"` makes it an item of a list), and through that schema the web
  page's Train form;
- the options of `ganserve train` (`cli/engine.py`) and the field table in the README
  (`tests/test_config_surfaces.py` checks each surface).

To add a field, add one declaration to `TrainConfig`, e.g. as a CycleGAN change would:

    cycle_weight: float = setting(
        10.0, "cyclegan only: weight of the cycle-consistency loss (unitless).",
        label="Cycle loss weight", low=0.0, high=100.0,
    )

It needs a default, so that old checkpoints' configs (which lack it) still load. Then use it
where it matters (models, losses, the loop) and regenerate the README's table
(`GANSERVE_UPDATE_DOCS=1 pytest tests/test_config_surfaces.py`); nothing else lists fields.
`resumable=True` lets a resumed run change it; `basic=True` puts it at the top of the web
form; `check=` gives a value of its own kind (like `device`) its own check; `api=` nests
its HTTP name (a new nesting gets its description in `API_GROUPS`). A field of one
architecture or loss says so in its help ("cyclegan only: ..."); a rule over several
fields goes in `TrainConfig._check_combinations`. A second dataset (CycleGAN's
`dataset_b`) is a `str | None` field with `check=_dataset_name`, and its fit to the config
is checked in `gan/compat.py` next to the first one's.

`ModelSpec` is what rebuilds G and D without the training config: stored with every
export, together with the sampling contract that turns its seeds into noise. Both are
plain dataclasses so that a checkpoint (or the JSON next to an exported generator) can
rebuild everything from its own contents: `TrainConfig.from_dict(ckpt["config"])`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ganserve.gan.errors import ConfigError

ARCHITECTURES = ("mlp", "dcgan", "cyclegan")
LOSS_NAMES = ("bce", "wgan-gp", "hinge")
CYCLE_LOSS_NAMES = ("lsgan", "bce", "wgan-gp", "hinge")  # gan.losses.LOSSES
LR_DECAYS = ("none", "linear")
NOISE_DISTRIBUTIONS = ("normal", "uniform")
PRECISIONS = ("fp32", "bf16")
ALARM_ACTIONS = ("warn", "stop", "rollback")
AUGMENTS = ("auto", "none", "translate")  # gan/augment.py
# What `augment: auto` and an unset `mode_seeking` mean for conditional models, by
# architecture (issue 13, measured on digits: bench/README.md). The mlp needs both to keep
# its classes diverse; on dcgan they cost class accuracy (worst class 0.97 -> 0.92 at 5k
# steps with mode seeking 0.015; FD 1.4 -> 3.4 with translation).
AUTO_AUGMENTED = frozenset({"mlp"})
AUTO_MODE_SEEKING = {"mlp": 0.025}
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

# Sampling contracts (how truncated noise is drawn; gan/sample.py has the details). A model
# keeps the contract it was exported with, so its bytes never change across upgrades:
# 1 = redraw |z| > truncation until none is left (every model exported before contracts were
#     numbered: a description without `sampling_contract` reads as 1);
# 2 = truncated noise by inverse CDF in one pass (every model trained since).
LEGACY_SAMPLING_CONTRACT = 1
SAMPLING_CONTRACT = 2  # what new models are written with; the highest this ganserve reads

# dcgan layouts (gan/models.py). A model keeps the layout it was trained with, so exported
# generators and checkpoints written before layout 2 still load and resume as they were:
# 1 = a transposed convolution per doubling, the last to the image's channels (every dcgan
#     exported before layouts were numbered: a description without `dcgan_layout` reads as 1);
# 2 = one more 3x3 convolution at every resolution in G and D (every dcgan trained since).
LEGACY_DCGAN_LAYOUT = 1
DCGAN_LAYOUT = 2


def check_choice(field_name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            field_name, f"invalid value {value!r}; valid choices are: {', '.join(choices)}"
        )


def check_int_range(field_name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(field_name, f"must be between {low} and {high}, got {value}")


def check_float_range(
    field_name: str, value: object, low: float, high: float, *, low_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field_name, f"must be a number, got {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        bracket = "(" if low_open else "["
        raise ConfigError(field_name, f"must be in {bracket}{low}, {high}], got {value}")


DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:[0-9]+)$"  # what _validate_device takes


def _validate_device(field_name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(field_name, f"must be a string, got {value!r}")
    if not re.fullmatch(DEVICE_PATTERN, value):
        raise ConfigError(
            field_name, f"invalid value {value!r}; valid choices are: auto, cpu, cuda, cuda:N"
        )


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """A model description dataclass (with a `class_names` tuple) as JSON-ready values."""
    data = dataclasses.asdict(spec)
    data["class_names"] = list(spec.class_names)
    return data


def spec_from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    """The inverse of `spec_to_dict`; ConfigError naming an unknown field."""
    data = dict(data)
    data["class_names"] = tuple(data.get("class_names", ()))
    return _from_dict(cls, data)


def _from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            unknown[0], f"unknown field; valid fields are: {', '.join(sorted(names))}"
        )
    return cls(**data)


def _non_empty(field_name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(field_name, "must be a non-empty string")


def _dataset_name(field_name: str, value: object) -> None:
    _non_empty(field_name, value)


def _optional_dataset_name(field_name: str, value: object) -> None:
    if value is not None:
        _non_empty(field_name, value)


@dataclass(frozen=True)
class ConfigField:
    """One declared training field: what `setting()` records plus the dataclass's name/type."""

    help: str  # meaning and unit: the API description, the CLI help, the docs
    label: str  # a short name for forms ("Batch size")
    low: float | None = None  # bounds of numbers (inclusive unless low_open)
    high: float | None = None
    low_open: bool = False  # the low bound itself is invalid: (low, high]
    choices: tuple[str, ...] = ()  # the valid strings (an enum in the API)
    resumable: bool = False  # a resumed run may change it (schedules, device, alarms)
    api: str | None = None  # its HTTP name where it differs: "noise.dim", "betas.0"
    basic: bool = False  # among the first fields a person sets (the web form's top part)
    check: Callable[[str, Any], None] | None = None  # a check of its own, instead of the type's
    pattern: str | None = None  # a str field's rule as a regex, for the API schema (with check=)
    # Filled in from the dataclass by `declared_fields()`:
    name: str = ""
    type: type = object  # int, float, bool or str
    optional: bool = False  # None is valid too (`str | None`)
    default: Any = None

    @property
    def api_name(self) -> str:
        return self.api or self.name

    def validate(self, value: object) -> None:
        """ConfigError naming this field if `value` is not valid for it."""
        if value is None and self.optional:
            return
        if self.check is not None:
            self.check(self.name, value)
        elif self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(self.name, f"must be true or false, got {value!r}")
        elif self.type is int:
            assert self.low is not None and self.high is not None, self.name
            check_int_range(self.name, value, int(self.low), int(self.high))
        elif self.type is float:
            assert self.low is not None and self.high is not None, self.name
            check_float_range(self.name, value, self.low, self.high, low_open=self.low_open)
        elif self.choices:
            check_choice(self.name, value, self.choices)
        else:
            _non_empty(self.name, value)


T = TypeVar("T")


def setting(
    default: T,
    help: str,
    *,
    label: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[str, ...] = (),
    resumable: bool = False,
    api: str | None = None,
    basic: bool = False,
    check: Callable[[str, Any], None] | None = None,
    pattern: str | None = None,
) -> T:
    """A TrainConfig field with its default and everything the other surfaces need."""
    declared = ConfigField(
        help, label, low, high, low_open, choices, resumable, api, basic, check, pattern
    )  # fmt: skip
    result: T = field(default=default, metadata={"ganserve": declared})
    return result


# The nested objects of the HTTP shape: their descriptions (fields declare `api="noise.dim"`).
API_GROUPS = {
    "noise": "The latent noise z fed to the generator.",
    "betas": "Adam (beta1, beta2) of both optimizers.",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults: the reference MLP GAN on digits.

    The checkpoint format: a checkpoint stores `to_dict()`, and `from_dict` fills fields an
    older checkpoint lacks with their defaults.
    """

    dataset: str = setting(
        "digits",
        "A built-in dataset (digits, mnist, fashion-mnist, cifar10) or the name of an uploaded "
        "one; GET /v1/datasets lists them.",
        label="Dataset", check=_dataset_name, basic=True,
    )  # fmt: skip
    architecture: str = setting(
        "mlp",
        "mlp = the reference MLP GAN; dcgan = convolutional (8-64 px images; on a CPU "
        "several times slower per step than mlp); cyclegan = image-to-image translation "
        "between dataset and dataset_b (8-256 px).",
        label="Architecture", choices=ARCHITECTURES, basic=True,
    )  # fmt: skip
    loss: str = setting(
        "bce",
        "bce = BCE for D, non-saturating -log D(G(z)) for G; wgan-gp; hinge.",
        label="Loss", choices=LOSS_NAMES, basic=True,
    )  # fmt: skip
    conditional: bool = setting(
        False,
        "Class-conditional GAN: labels enter G (concatenated) and D (projection); needs a "
        "labelled dataset.",
        label="Conditional (class labels)", basic=True,
    )  # fmt: skip
    noise_dim: int = setting(
        100, "Length of the latent vector z (values per image).",
        label="Noise dimension", low=1, high=MAX_NOISE_DIM, api="noise.dim",
    )  # fmt: skip
    noise_distribution: str = setting(
        "normal", "normal = N(0, 1); uniform = U(-1, 1).",
        label="Noise distribution", choices=NOISE_DISTRIBUTIONS, api="noise.distribution",
    )  # fmt: skip
    steps: int = setting(
        2000, "Generator updates (training steps).",
        label="Steps", low=1, high=MAX_STEPS, resumable=True, basic=True,
    )  # fmt: skip
    batch_size: int = setting(
        128, "Real images per discriminator step; at most the dataset's size.",
        label="Batch size", low=2, high=MAX_BATCH_SIZE, basic=True,
    )  # fmt: skip
    lr_g: float = setting(
        2e-4, "Adam learning rate of the generator.",
        label="Generator learning rate", low=0.0, high=1.0, low_open=True,
    )  # fmt: skip
    lr_d: float = setting(
        2e-4, "Adam learning rate of the discriminator.",
        label="Discriminator learning rate", low=0.0, high=1.0, low_open=True,
    )  # fmt: skip
    beta1: float = setting(
        0.5, "Adam beta1 of both optimizers (Keras' reference: 0.9).",
        label="Adam β1", low=0.0, high=0.9999, api="betas.0",
    )  # fmt: skip
    beta2: float = setting(
        0.999, "Adam beta2 of both optimizers.",
        label="Adam β2", low=0.0, high=0.9999, api="betas.1",
    )  # fmt: skip
    n_critic: int = setting(
        1, "Discriminator steps per generator step (5 is usual for wgan-gp).",
        label="Critic steps per generator step", low=1, high=MAX_N_CRITIC,
    )  # fmt: skip
    gp_lambda: float = setting(
        10.0, "Gradient-penalty weight (wgan-gp only).",
        label="Gradient penalty weight", low=0.0, high=1000.0,
    )  # fmt: skip
    ema: float = setting(
        0.999, "Per-step decay of the EMA generator that gets served; 0 serves G as is.",
        label="EMA decay", low=0.0, high=0.99999,
    )  # fmt: skip
    checkpoint_every: int = setting(
        500, "Steps between checkpoints (the last step always writes one).",
        label="Checkpoint every (steps)", low=1, high=MAX_STEPS, resumable=True,
    )  # fmt: skip
    keep_checkpoints: int = setting(
        3, "Newest checkpoints kept on disk.",
        label="Checkpoints kept", low=1, high=MAX_KEEP_CHECKPOINTS, resumable=True,
    )  # fmt: skip
    sample_every: int = setting(
        500, "Steps between fixed-noise preview grids (GET /v1/jobs/{id}/preview.png).",
        label="Preview every (steps)", low=1, high=MAX_STEPS, resumable=True,
    )  # fmt: skip
    seed: int = setting(
        0, "Seeds the weights, the data order and the noise.",
        label="Seed", low=0, high=2**63 - 1,
    )  # fmt: skip
    device: str = setting(
        "auto", "auto | cpu | cuda | cuda:N (auto: the worker's configured device, else CUDA when "
        "present, else the CPU).",
        label="Device", check=_validate_device, pattern=DEVICE_PATTERN, resumable=True,
    )  # fmt: skip
    precision: str = setting(
        "fp32", "fp32, or bf16 autocast (CUDA only).",
        label="Precision", choices=PRECISIONS,
    )  # fmt: skip
    dcgan_width: int = setting(
        64, "Channels of dcgan's D at full resolution, doubling per downsample; G has twice "
        "D's channels at each resolution, at most 8x this.",
        label="DCGAN width", low=4, high=512,
    )  # fmt: skip
    class_loss: float = setting(
        0.1,
        "Conditional models: weight of the auxiliary classification loss (AC-GAN): D also "
        "learns each real image's class, and G is rewarded when D finds the class it asked "
        "for; 0 = projection only.",
        label="Class loss weight (conditional)", low=0.0, high=100.0,
    )  # fmt: skip
    mode_seeking: float | None = setting(
        None,
        "Conditional models: weight of the mode-seeking term (MSGAN): G pays when two noise "
        "vectors of one class give alike images; 0 = off; unset = 0.025 for mlp, 0 for dcgan.",
        label="Mode-seeking weight (conditional)", low=0.0, high=10.0,
    )  # fmt: skip
    augment: str = setting(
        "auto",
        "Augmentation of D's inputs, real and generated alike (DiffAugment): translate = "
        "shifted by up to 1 px; auto = translate for conditional mlp models, else none.",
        label="Discriminator augmentation", choices=AUGMENTS,
    )  # fmt: skip
    compile: bool = setting(
        False, "torch.compile G and D (slow to start; pays off on long CUDA runs).",
        label="torch.compile", resumable=True,
    )  # fmt: skip
    eval_every: int = setting(
        500,
        "Steps between quality evaluations (Fréchet distance, KID, class coverage); 0 = only "
        "at the end.",
        label="Evaluate every (steps)", low=0, high=MAX_STEPS, resumable=True,
    )  # fmt: skip
    eval_samples: int = setting(
        1000, "Generated images per quality evaluation.",
        label="Evaluation samples", low=2, high=MAX_EVAL_SAMPLES, resumable=True,
    )  # fmt: skip
    on_alarm: str = setting(
        "warn",
        "On a quality alarm (mode or class collapse, divergence; cyclegan: input ignored, "
        "digit lost): warn (a job warning and event), stop (fail the job), rollback (stop and "
        "register the best evaluated model; cyclegan: the best without alarms).",
        label="On a quality alarm", choices=ALARM_ACTIONS, resumable=True,
    )  # fmt: skip
    alarm_coverage: float = setting(
        0.8,
        "Mode-collapse alarm when fewer than this fraction of classes get a fair share (half "
        "of 1/classes) of the samples.",
        label="Mode-collapse alarm: class coverage", low=0.0, high=1.0, resumable=True,
    )  # fmt: skip
    alarm_after: float = setting(
        0.5,
        "Fraction of the steps before which evaluations raise no collapse alarm (mode or class "
        "collapse): the model is still forming. Divergence alarms always apply.",
        label="Collapse alarms from (fraction of steps)", low=0.0, high=1.0, resumable=True,
    )  # fmt: skip
    alarm_fd_patience: int = setting(
        3, "Divergence alarm when the Fréchet distance rises this many evaluations in a row.",
        label="Divergence alarm: FD rises in a row", low=1, high=100, resumable=True,
    )  # fmt: skip

    dataset_b: str | None = setting(
        None,
        "cyclegan only: domain B's dataset (built-in or uploaded); unset with dataset digits = "
        "the built-in digits-on-colour.",
        label="Second dataset (CycleGAN)", check=_optional_dataset_name,
    )  # fmt: skip
    cycle_loss: str = setting(
        "lsgan", "cyclegan only: adversarial loss (lsgan = least squares, the paper's).",
        label="CycleGAN adversarial loss", choices=CYCLE_LOSS_NAMES,
    )  # fmt: skip
    lambda_cycle: float = setting(
        10.0, "cyclegan only: weight of the cycle-consistency L1 loss (unitless).",
        label="Cycle loss weight", low=0.0, high=1000.0,
    )  # fmt: skip
    lambda_identity: float = setting(
        0.5, "cyclegan only: identity L1 loss weight, as a fraction of lambda_cycle; 0 = off.",
        label="Identity loss (fraction of cycle weight)", low=0.0, high=10.0,
    )  # fmt: skip
    pool_size: int = setting(
        50, "cyclegan only: generated images kept per domain for the discriminators; 0 = none.",
        label="Image history pool", low=0, high=1000,
    )  # fmt: skip
    lr_decay: str = setting(
        "none", "cyclegan only: none, or linear to 0 from lr_decay_start x steps (the paper's).",
        label="Learning-rate decay", choices=LR_DECAYS,
    )  # fmt: skip
    lr_decay_start: float = setting(
        0.5, "cyclegan only: fraction of steps after which the linear decay starts.",
        label="Decay starts at (fraction of steps)", low=0.0, high=1.0,
    )  # fmt: skip
    cyclegan_width: int = setting(
        0, "cyclegan only: channels of the generators' first layer; 0 = by image size.",
        label="CycleGAN width", low=0, high=256,
    )  # fmt: skip

    def translates_d_inputs(self) -> bool:
        """`augment` resolved: auto = translate for conditional mlp models only."""
        if self.augment == "auto":
            return self.conditional and self.architecture in AUTO_AUGMENTED
        return self.augment == "translate"

    def class_loss_weight(self) -> float:
        """`class_loss` for conditional models; 0 for unconditional ones (no classes)."""
        return self.class_loss if self.conditional else 0.0

    def mode_seeking_weight(self) -> float:
        """`mode_seeking` resolved: 0 for unconditional models; unset = by architecture."""
        if not self.conditional:
            return 0.0
        if self.mode_seeking is None:
            return AUTO_MODE_SEEKING.get(self.architecture, 0.0)
        return self.mode_seeking

    def __post_init__(self) -> None:
        for declared in CONFIG_FIELDS:
            declared.validate(getattr(self, declared.name))
        self._check_combinations()

    def _check_combinations(self) -> None:
        """Rules over several fields (none yet: dataset-dependent ones are in gan/compat.py)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        result: TrainConfig = _from_dict(cls, data)
        return result

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def declared_fields(cls: type[Any]) -> tuple[ConfigField, ...]:
    """A config dataclass's fields: their `setting()` declarations, name, type and default."""
    hints = typing.get_type_hints(cls)
    result = []
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) == 1 and type(None) in typing.get_args(hint)
        kind = args[0] if optional else hint
        assert kind in (int, float, bool, str), f"{item.name}: unsupported type {hint}"
        result.append(
            dataclasses.replace(
                item.metadata["ganserve"],
                name=item.name,
                type=kind,
                optional=optional,
                default=item.default,
            )
        )
    return tuple(result)


CONFIG_FIELDS = declared_fields(TrainConfig)
# Fields that may differ between a checkpoint and the config resuming from it.
RESUMABLE_CHANGES = frozenset(f.name for f in CONFIG_FIELDS if f.resumable)


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
    sampling_contract: int = SAMPLING_CONTRACT  # how seeds become noise (see above)
    dcgan_layout: int = DCGAN_LAYOUT  # which dcgan layers (see above); unused by mlp

    def __post_init__(self) -> None:
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_int_range("sampling_contract", self.sampling_contract, 1, SAMPLING_CONTRACT)
        check_int_range("dcgan_layout", self.dcgan_layout, 1, DCGAN_LAYOUT)
        check_int_range("channels", self.channels, 1, 4)
        check_int_range("noise_dim", self.noise_dim, 1, MAX_NOISE_DIM)
        check_choice("noise_distribution", self.noise_distribution, NOISE_DISTRIBUTIONS)
        check_int_range("num_classes", self.num_classes, 0, 10_000)
        if self.architecture == "dcgan" and self.image_size not in DCGAN_IMAGE_SIZES:
            raise ConfigError(
                "image_size",
                f"dcgan supports square images of {', '.join(map(str, DCGAN_IMAGE_SIZES))} px, "
                f"got {self.image_size}; use architecture 'mlp' or resize the dataset",
            )
        check_int_range("image_size", self.image_size, 2, 1024)
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
        return spec_to_dict(self)

    def resumes_as(self, other: ModelSpec) -> bool:
        """Whether a checkpoint of this spec may continue a run configured for `other`.

        The same G and D, but for the sampling contract and the dcgan layout: a run keeps the
        ones it started with, so the resumed run exports what the uninterrupted one would.
        """
        kept = dataclasses.replace(
            other, sampling_contract=self.sampling_contract, dcgan_layout=self.dcgan_layout
        )
        return kept == self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """The spec of a description; one written before contracts (layouts) were numbered
        reads as contract 1 (layout 1)."""
        legacy = {
            "sampling_contract": LEGACY_SAMPLING_CONTRACT,
            "dcgan_layout": LEGACY_DCGAN_LAYOUT,
        }
        result: ModelSpec = spec_from_dict(cls, {**legacy, **data})
        return result
