"""Does a training config fit a dataset? The one check, for the API and the training loop.

The API calls `check_compatible` before it enqueues a job, with a `DatasetInfo` read from
file headers (`describe_dataset`); the loop calls it before training, with the info of the
loaded images. Both get the same ConfigError, naming the TrainConfig field a person would
change (`architecture` when dcgan does not fit the image size), and the same `ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ganserve.gan.config import ModelSpec, TrainConfig
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import ConfigError

# ModelSpec field -> the TrainConfig field that decides it (what to change when it is refused).
_DECIDED_BY = {
    "image_size": "architecture",
    "channels": "dataset",
    "num_classes": "conditional",
    "class_names": "dataset",
}


@dataclass(frozen=True)
class DatasetInfo:
    """What the checks need to know of a dataset: no pixels."""

    name: str
    size: int  # images
    channels: int  # C of the (C, H, W) images
    image_size: int  # H == W
    classes: tuple[str, ...]  # class names; ("all",) for unlabelled data

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def of(cls, dataset: ImageDataset) -> DatasetInfo:
        """The info of loaded images."""
        return cls(
            dataset.name, len(dataset), dataset.channels, dataset.image_size, dataset.class_names
        )

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> DatasetInfo:
        """The info of a `describe_dataset` result (read from file headers)."""
        return cls(
            str(description["name"]),
            int(description["size"]),
            int(description["channels"]),
            int(description["image_size"]),
            tuple(description["classes"]),
        )


def model_spec_for(config: TrainConfig, dataset: DatasetInfo | ImageDataset) -> ModelSpec:
    """The description of G and D for this config on this data; ConfigError if they don't fit.

    The error names the config field to change (see `_DECIDED_BY`).
    """
    info = DatasetInfo.of(dataset) if isinstance(dataset, ImageDataset) else dataset
    try:
        return ModelSpec(
            architecture=config.architecture,
            channels=info.channels,
            image_size=info.image_size,
            noise_dim=config.noise_dim,
            noise_distribution=config.noise_distribution,
            num_classes=info.num_classes if config.conditional else 0,
            dcgan_width=config.dcgan_width,
            class_names=info.classes if config.conditional else (),
        )
    except ConfigError as error:
        raise ConfigError(_DECIDED_BY.get(error.field, error.field), error.message) from None


def check_compatible(
    config: TrainConfig, dataset: DatasetInfo, device_type: str | None = None
) -> ModelSpec:
    """The ModelSpec of this run, or ConfigError naming the field that does not fit.

    device_type: "cpu" or "cuda" when the device is known (the loop); None reads it from
    config.device, where "auto" may still become either.
    """
    if config.architecture == "cyclegan":
        raise ConfigError(
            "architecture", "cyclegan trains on two domains: use gan.translation.train."
            "train_cyclegan (the worker and `ganserve train` do)",
        )  # fmt: skip
    if config.batch_size > dataset.size:
        raise ConfigError(
            "batch_size",
            f"{config.batch_size} exceeds the {dataset.size} images of dataset "
            f"{dataset.name!r}; use at most {dataset.size}",
        )
    if config.conditional and dataset.num_classes < 2:
        raise ConfigError(
            "conditional",
            f"dataset {dataset.name!r} has no class labels ({dataset.num_classes} class); set "
            "conditional to false or use a labelled dataset (one folder per class)",
        )
    if device_type is None and config.device == "cpu":
        device_type = "cpu"
    if config.precision == "bf16" and device_type not in (None, "cuda"):
        raise ConfigError("precision", "bf16 autocast needs a CUDA device; use fp32 on the CPU")
    return model_spec_for(config, dataset)
