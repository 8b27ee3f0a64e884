"""The one dataset-compatibility check: the same answer from file headers and from images."""

from __future__ import annotations

import pytest
import torch

from ganserve.gan.compat import DatasetInfo, check_compatible, model_spec_for
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import ImageDataset, describe_dataset
from ganserve.gan.errors import ConfigError

RGB12 = DatasetInfo("rgb12", size=8, channels=3, image_size=12, classes=("all",))


def test_info_of_images_equals_info_of_headers(digits: ImageDataset) -> None:
    from_headers = DatasetInfo.from_description(describe_dataset("digits"))
    assert DatasetInfo.of(digits) == from_headers
    assert from_headers == DatasetInfo("digits", 1797, 1, 8, tuple(str(d) for d in range(10)))


@pytest.mark.parametrize(
    ("config", "info", "field", "needle"),
    [
        (TrainConfig(batch_size=9), RGB12, "batch_size",
         "9 exceeds the 8 images of dataset 'rgb12'; use at most 8"),
        (TrainConfig(batch_size=8, conditional=True), RGB12, "conditional", "has no class labels"),
        (TrainConfig(batch_size=8, architecture="dcgan"), RGB12, "architecture",
         "dcgan supports square images of 8, 14, 16, 28, 32, 56, 64 px, got 12"),
        (TrainConfig(batch_size=2), DatasetInfo("big", 2, 3, 96, ("a", "b")), "architecture",
         "mlp supports at most"),
        (TrainConfig(batch_size=8, precision="bf16", device="cpu"), RGB12, "precision",
         "bf16 autocast needs a CUDA device"),
    ],
)  # fmt: skip
def test_refusals_name_the_config_field(
    config: TrainConfig, info: DatasetInfo, field: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_compatible(config, info)
    assert caught.value.field == field and needle in caught.value.message


def test_the_device_decides_bf16_when_known() -> None:
    config = TrainConfig(batch_size=8, precision="bf16")  # device "auto": may become CUDA
    assert check_compatible(config, RGB12).image_size == 12
    with pytest.raises(ConfigError, match="precision: bf16"):
        check_compatible(config, RGB12, device_type="cpu")
    check_compatible(config, RGB12, device_type="cuda")


def test_the_model_spec_follows_the_config_and_the_data(digits: ImageDataset) -> None:
    conditional = check_compatible(
        TrainConfig(conditional=True, noise_dim=7), DatasetInfo.of(digits)
    )
    assert (conditional.num_classes, conditional.noise_dim, conditional.image_shape) == (
        10, 7, (1, 8, 8),
    )  # fmt: skip
    assert conditional.class_names == tuple(str(d) for d in range(10))
    plain = model_spec_for(TrainConfig(), digits)
    assert (plain.num_classes, plain.class_names) == (0, ())
    images = torch.zeros((4, 3, 12, 12), dtype=torch.uint8)
    small = ImageDataset("rgb12", images, torch.zeros(4, dtype=torch.int64), ("all",))
    assert DatasetInfo.of(small) == DatasetInfo("rgb12", 4, 3, 12, ("all",))
