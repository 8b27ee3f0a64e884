"""The training spec: the body of `POST /v1/jobs` (DESIGN §5), converted to gan's TrainConfig.

The pydantic model checks types and shape (unknown fields, nesting); `TrainConfig` checks
values, so the valid ranges and choices live in one place. Its `ConfigError` names a config
field (`noise_dim`), which `to_config` renames to the spec's (`noise.dim`).

`check_against_dataset` then catches at submit time what would otherwise fail the job on the
worker: an unknown or missing dataset, a batch larger than the dataset, a conditional model
on unlabelled data, an architecture that does not fit the image size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from ganserve.gan.config import (
    ALARM_ACTIONS,
    ARCHITECTURES,
    LOSS_NAMES,
    MAX_BATCH_SIZE,
    MAX_EVAL_SAMPLES,
    MAX_KEEP_CHECKPOINTS,
    MAX_N_CRITIC,
    MAX_NOISE_DIM,
    MAX_STEPS,
    NOISE_DISTRIBUTIONS,
    PRECISIONS,
    TrainConfig,
)
from ganserve.gan.data import BUILTIN_DATASETS, ImageDataset, describe_dataset
from ganserve.gan.errors import ConfigError, DatasetError
from ganserve.gan.train import model_spec_for
from ganserve.store.errors import InvalidValueError
from ganserve.store.names import MODEL_NAME_PATTERN, validate_model_name

# TrainConfig field -> the spec field a client sent (the nested API shape).
CONFIG_TO_SPEC_FIELD = {
    "noise_dim": "noise.dim",
    "noise_distribution": "noise.distribution",
    "beta1": "betas.0",
    "beta2": "betas.1",
    # ModelSpec fields (dataset-dependent checks): what the client can change
    "image_size": "architecture",
    "channels": "dataset",
    "num_classes": "conditional",
    "class_names": "dataset",
}
MAX_NAME_LENGTH = 64

EXAMPLE_SPEC: dict[str, Any] = {
    "name": "digits-gan",
    "dataset": "digits",
    "architecture": "mlp",
    "loss": "bce",
    "conditional": False,
    "noise": {"dim": 100, "distribution": "normal"},
    "steps": 2000,
    "batch_size": 128,
    "lr_g": 0.0002,
    "lr_d": 0.0002,
    "betas": [0.5, 0.999],
    "seed": 0,
}


def _choices(choices: tuple[str, ...]) -> dict[str, Any]:
    return {"enum": list(choices)}


def _bounds(low: float, high: float) -> dict[str, Any]:
    return {"minimum": low, "maximum": high}


class NoiseSpec(BaseModel):
    """The latent noise z fed to the generator."""

    model_config = ConfigDict(extra="forbid")

    dim: StrictInt = Field(
        default=100,
        description="Length of the latent vector z (values per image).",
        json_schema_extra=_bounds(1, MAX_NOISE_DIM),
    )
    distribution: StrictStr = Field(
        default="normal",
        description="normal = N(0, 1); uniform = U(-1, 1).",
        json_schema_extra=_choices(NOISE_DISTRIBUTIONS),
    )


class TrainSpec(BaseModel):
    """A training job: what to train on, which GAN, and for how long."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_SPEC]})

    name: StrictStr | None = Field(
        default=None,
        description=(
            "Name of the model this job registers a version of; 1-64 characters of lowercase "
            "letters, digits, '.', '_' and '-'. Default: '<dataset>-<architecture>'."
        ),
        json_schema_extra={"pattern": MODEL_NAME_PATTERN},
    )
    dataset: StrictStr = Field(
        default="digits",
        description=(
            f"A built-in dataset ({', '.join(BUILTIN_DATASETS)}) or the name of an uploaded "
            "one; GET /v1/datasets lists them."
        ),
    )
    architecture: StrictStr = Field(
        default="mlp",
        description="mlp = the reference MLP GAN; dcgan = convolutional (8-64 px images).",
        json_schema_extra=_choices(ARCHITECTURES),
    )
    loss: StrictStr = Field(
        default="bce",
        description="bce = BCE for D, non-saturating -log D(G(z)) for G; wgan-gp; hinge.",
        json_schema_extra=_choices(LOSS_NAMES),
    )
    conditional: StrictBool = Field(
        default=False,
        description="Class-conditional GAN: labels enter G and D (needs a labelled dataset).",
    )
    noise: NoiseSpec = Field(default_factory=NoiseSpec, description="The latent noise z.")
    steps: StrictInt = Field(
        default=2000,
        description="Generator updates (training steps).",
        json_schema_extra=_bounds(1, MAX_STEPS),
    )
    batch_size: StrictInt = Field(
        default=128,
        description="Real images per discriminator step; at most the dataset's size.",
        json_schema_extra=_bounds(2, MAX_BATCH_SIZE),
    )
    lr_g: StrictFloat = Field(
        default=2e-4,
        description="Adam learning rate of the generator, in (0, 1].",
        json_schema_extra=_bounds(0, 1),
    )
    lr_d: StrictFloat = Field(
        default=2e-4,
        description="Adam learning rate of the discriminator, in (0, 1].",
        json_schema_extra=_bounds(0, 1),
    )
    betas: tuple[StrictFloat, StrictFloat] = Field(
        default=(0.5, 0.999),
        description="Adam (beta1, beta2) of both optimizers, each in [0, 0.9999].",
    )
    n_critic: StrictInt = Field(
        default=1,
        description="Discriminator steps per generator step (5 is usual for wgan-gp).",
        json_schema_extra=_bounds(1, MAX_N_CRITIC),
    )
    gp_lambda: StrictFloat = Field(
        default=10.0,
        description="Gradient-penalty weight (wgan-gp only).",
        json_schema_extra=_bounds(0, 1000),
    )
    ema: StrictFloat = Field(
        default=0.999,
        description="Per-step decay of the EMA generator that gets served; 0 serves G as is.",
        json_schema_extra=_bounds(0, 0.99999),
    )
    checkpoint_every: StrictInt = Field(
        default=500,
        description="Steps between checkpoints (the last step always writes one).",
        json_schema_extra=_bounds(1, MAX_STEPS),
    )
    sample_every: StrictInt = Field(
        default=500,
        description="Steps between fixed-noise preview grids (GET /v1/jobs/{id}/preview.png).",
        json_schema_extra=_bounds(1, MAX_STEPS),
    )
    keep_checkpoints: StrictInt = Field(
        default=3,
        description="Newest checkpoints kept on disk.",
        json_schema_extra=_bounds(1, MAX_KEEP_CHECKPOINTS),
    )
    seed: StrictInt = Field(
        default=0,
        description="Seeds the weights, the data order and the noise.",
        json_schema_extra=_bounds(0, 2**63 - 1),
    )
    device: StrictStr = Field(
        default="auto",
        description="auto | cpu | cuda | cuda:N (auto: the worker's configured device).",
    )
    precision: StrictStr = Field(
        default="fp32",
        description="fp32, or bf16 autocast (CUDA only).",
        json_schema_extra=_choices(PRECISIONS),
    )
    dcgan_width: StrictInt = Field(
        default=64,
        description="Channels of dcgan's widest-resolution layer (doubles per downsample).",
        json_schema_extra=_bounds(4, 512),
    )
    compile: StrictBool = Field(
        default=False, description="torch.compile G and D (slow to start; for long CUDA runs)."
    )
    eval_every: StrictInt = Field(
        default=500,
        description="Steps between quality evaluations (Fréchet distance, KID, class "
        "coverage); 0 = only at the end.",
        json_schema_extra=_bounds(0, MAX_STEPS),
    )
    eval_samples: StrictInt = Field(
        default=1000,
        description="Generated images per quality evaluation.",
        json_schema_extra=_bounds(2, MAX_EVAL_SAMPLES),
    )
    on_alarm: StrictStr = Field(
        default="warn",
        description="On a mode-collapse or divergence alarm: warn (a job warning and event), "
        "stop (fail the job), rollback (stop and register the best evaluated model).",
        json_schema_extra=_choices(ALARM_ACTIONS),
    )
    alarm_coverage: StrictFloat = Field(
        default=0.8,
        description="Mode-collapse alarm when fewer than this fraction of classes get a fair "
        "share (half of 1/classes) of the samples.",
        json_schema_extra=_bounds(0, 1),
    )
    alarm_fd_patience: StrictInt = Field(
        default=3,
        description="Divergence alarm when the Fréchet distance rises this many evaluations "
        "in a row.",
        json_schema_extra=_bounds(1, 100),
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
        return self.name or f"{self.dataset}-{self.architecture}"[:MAX_NAME_LENGTH]

    def to_config(self) -> TrainConfig:
        """The validated TrainConfig; ConfigError naming the spec field if a value is invalid."""
        try:
            return TrainConfig(
                dataset=self.dataset,
                architecture=self.architecture,
                loss=self.loss,
                conditional=self.conditional,
                noise_dim=self.noise.dim,
                noise_distribution=self.noise.distribution,
                steps=self.steps,
                batch_size=self.batch_size,
                lr_g=self.lr_g,
                lr_d=self.lr_d,
                beta1=self.betas[0],
                beta2=self.betas[1],
                n_critic=self.n_critic,
                gp_lambda=self.gp_lambda,
                ema=self.ema,
                checkpoint_every=self.checkpoint_every,
                keep_checkpoints=self.keep_checkpoints,
                sample_every=self.sample_every,
                seed=self.seed,
                device=self.device,
                precision=self.precision,
                dcgan_width=self.dcgan_width,
                compile=self.compile,
                eval_every=self.eval_every,
                eval_samples=self.eval_samples,
                on_alarm=self.on_alarm,
                alarm_coverage=self.alarm_coverage,
                alarm_fd_patience=self.alarm_fd_patience,
            )
        except ConfigError as error:
            raise _renamed(error) from None

    @classmethod
    def from_config(cls, config: TrainConfig | dict[str, Any], name: str) -> TrainSpec:
        """The spec in the API's nested shape for a stored config (the job's echo)."""
        values = dict(config.to_dict() if isinstance(config, TrainConfig) else config)
        noise = {"dim": values.pop("noise_dim", 100)}
        noise["distribution"] = values.pop("noise_distribution", "normal")
        betas = (values.pop("beta1", 0.5), values.pop("beta2", 0.999))
        known = {key: value for key, value in values.items() if key in cls.model_fields}
        return cls.model_validate({**known, "name": name, "noise": noise, "betas": betas})


def _renamed(error: ConfigError) -> ConfigError:
    field = CONFIG_TO_SPEC_FIELD.get(error.field, error.field)
    return ConfigError(field, error.message)


def check_against_dataset(config: TrainConfig, data_dir: Path) -> dict[str, Any]:
    """Check what depends on the dataset; its description, or DatasetError / ConfigError.

    Reads only file headers: the dataset's images are not loaded.
    """
    info = describe_dataset(config.dataset, data_dir)  # DatasetError: unknown dataset
    if not info["available"]:
        raise DatasetError(info["missing_files_hint"])
    size, classes = int(info["size"]), list(info["classes"])
    if config.batch_size > size:
        raise ConfigError(
            "batch_size",
            f"{config.batch_size} exceeds the {size} images of dataset {config.dataset!r}; "
            f"use at most {size}",
        )
    if config.conditional and len(classes) < 2:
        raise ConfigError(
            "conditional",
            f"dataset {config.dataset!r} has no class labels ({len(classes)} class); set "
            "conditional to false or use a labelled dataset (one folder per class)",
        )
    if config.precision == "bf16" and config.device == "cpu":
        raise ConfigError("precision", "bf16 autocast needs a CUDA device; use fp32 on the CPU")
    # The architecture must fit the images: build the model description from a 1-image probe
    # of the dataset's shape, exactly as the worker will from the real data.
    channels, image_size = int(info["channels"]), int(info["image_size"])
    probe = ImageDataset(
        config.dataset,
        torch.zeros((1, channels, image_size, image_size), dtype=torch.uint8),
        torch.zeros(1, dtype=torch.int64),
        tuple(classes),
    )
    try:
        model_spec_for(config, probe)
    except ConfigError as error:
        raise _renamed(error) from None
    return info
