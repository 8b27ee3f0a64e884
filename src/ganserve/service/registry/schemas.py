"""Request and response models of the model-registry and sampling routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from ganserve.gan.sample import MAX_SEED
from ganserve.service.integers import INTEGRAL
from ganserve.store.names import VERSION_REF_EXACT_PATTERN

# Seeds are non-negative signed 64-bit integers (gan.sample.MAX_SEED).
# Below this, sampling contract 1 would redraw most of the noise many times over (DESIGN §8
# bounds); contract 2's cost does not depend on it, but one schema serves both.
MIN_TRUNCATION = 0.05
TRUNCATION_HELP = (
    "Keep every noise entry within [-truncation, truncation] (the truncation trick: more typical "
    "images); how, is the version's `noise.sampling_contract`."
)

Seed = Annotated[int, Field(ge=0, le=MAX_SEED), Strict(), INTEGRAL]
# A class number: documented >= 0, checked (with the model's class names) once the version
# is known (422).
Label = Annotated[int, Field(json_schema_extra={"minimum": 0}), Strict(), INTEGRAL]


class NoiseOut(BaseModel):
    dim: int = Field(description="Length of the noise vector z.")
    distribution: str = Field(description="`normal` = N(0, 1), `uniform` = U(-1, 1).")
    sampling_contract: int = Field(
        description="How seeds become noise when `truncation` is set: 1 = out-of-range entries "
        "redrawn until none is left (models exported before contracts were numbered), 2 = one "
        "pass by inverse CDF (every model trained since). Without truncation both draw the "
        "same noise. A version keeps its contract, so its images never change."
    )


class VersionOut(BaseModel):
    """One registered version of a model: where it came from and what it generates."""

    name: str
    version: int = Field(description="1, 2, 3, ... per model; never reused after a delete.")
    job_id: str | None = Field(description="The training job that exported it.")
    step: int = Field(description="The training step the generator comes from.")
    created_at: datetime
    aliases: list[str] = Field(description="Aliases pointing at this version (incl. `latest`).")
    kind: Literal["noise", "translation"] = Field(
        "noise",
        description="`noise`: samples from noise (samples.png, ...); `translation`: a CycleGAN "
        "that translates images (POST .../translate).",
    )
    domains: list[str] | None = Field(
        None, description="Translation models: the datasets of domains A and B."
    )
    architecture: str | None = Field(description="`mlp`, `dcgan` or `cyclegan`.")
    image_shape: list[int] | None = Field(description="[channels, height, width] of one image.")
    conditional: bool | None = Field(description="Takes a class label (`label`, `labels`).")
    classes: list[str] = Field(
        description="Class names of a conditional model; label i is classes[i]. Empty otherwise."
    )
    noise: NoiseOut | None
    dataset: str | None = Field(description="The dataset it was trained on.")
    sha256: str | None = Field(description="Content hash of the exported weights.")
    metrics: dict[str, Any] = Field(description="Quality metrics recorded at registration.")


class ModelSummaryOut(BaseModel):
    name: str
    latest_version: int
    versions: int = Field(description="Number of live (not deleted) versions.")
    aliases: dict[str, int] = Field(description="Alias -> version, including `latest`.")
    created_at: datetime = Field(description="When its oldest live version was registered.")
    updated_at: datetime = Field(description="Its newest version or alias change.")


class ModelList(BaseModel):
    items: list[ModelSummaryOut] = Field(description="Models with a live version, by name.")


class ModelOut(BaseModel):
    """A model: its live versions (oldest first) and aliases."""

    name: str
    latest_version: int
    aliases: dict[str, int] = Field(description="Alias -> version, including `latest`.")
    created_at: datetime
    updated_at: datetime
    versions: list[VersionOut]


class AliasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[
        int, Field(ge=1, le=2**31 - 1, description="The version it names."), Strict(), INTEGRAL
    ]


class AliasOut(BaseModel):
    name: str
    alias: str
    version: int
    aliases: dict[str, int] = Field(description="All aliases of the model after the change.")


class BulkSamplesIn(BaseModel):
    """Many images at once: `n` images from `seed` (image i uses seed + i, wrapping past
    2**63 - 1 to 0), or `seeds`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"n": 100, "seed": 0, "format": "zip"}],
            # Exactly one way to name the images (the server refuses both, and neither):
            # `seeds` (then no `n` or `seed`), else `n`.
            "if": {"properties": {"seeds": {"type": "array"}}, "required": ["seeds"]},
            "then": {"properties": {"n": {"type": "null"}, "seed": {"type": "null"}}},
            "else": {"properties": {"n": {"type": "integer"}}, "required": ["n"]},
        },
    )

    n: Annotated[int, Field(ge=1), Strict(), INTEGRAL] | None = Field(
        default=None, description="Number of images (with `seed`)."
    )
    seed: Seed | None = Field(default=None, description="Seed of the first image; default 0.")
    seeds: list[Seed] | None = Field(
        default=None, min_length=1, description="One seed per image (instead of `n`/`seed`)."
    )
    labels: Label | list[Label] | None = Field(
        default=None,
        description="Conditional models: one class for every image, or one per image (as many "
        "as images). Unset: each image's class is drawn from its seed.",
    )
    truncation: float | None = Field(
        default=None,
        ge=MIN_TRUNCATION,
        allow_inf_nan=False,
        description=TRUNCATION_HELP,
    )
    version: str = Field(
        default="latest",
        min_length=1,
        description="A number or an alias.",
        json_schema_extra={"pattern": VERSION_REF_EXACT_PATTERN},
    )
    format: Literal["zip", "npz"] = Field(
        default="zip",
        description="`zip`: PNGs + labels.csv; `npz`: images (N, H, W, C) uint8, labels, seeds.",
    )
