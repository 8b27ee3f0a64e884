"""The conditional models' regularisers (issue 13): translation, mode seeking, their defaults."""

from __future__ import annotations

import pytest
import torch

from ganserve.gan.augment import MAX_SHIFT, draw_shifts, translate
from ganserve.gan.config import TrainConfig
from ganserve.gan.errors import ConfigError
from ganserve.gan.losses import mode_seeking_loss


def test_translate_moves_each_image_by_its_own_shift() -> None:
    images = torch.arange(2 * 1 * 3 * 3, dtype=torch.float).view(2, 1, 3, 3)
    shifts = torch.tensor([[1, 0], [0, -1]])  # image 0: one row down; image 1: one column left
    moved = translate(images, shifts)
    assert moved[0, 0].tolist() == [[-1, -1, -1], [0, 1, 2], [3, 4, 5]]
    assert moved[1, 0].tolist() == [[10, 11, -1], [13, 14, -1], [16, 17, -1]]
    assert torch.equal(translate(images, torch.zeros(2, 2, dtype=torch.long)), images)


def test_translate_keeps_channels_together_and_passes_gradients() -> None:
    images = torch.randn(4, 3, 8, 8, requires_grad=True)
    shifts = torch.tensor([[1, -1, 0, 1], [1, 0, -1, -1]])
    moved = translate(images, shifts)
    assert moved.shape == images.shape
    assert torch.equal(moved[0, :, 1:, 1:], images[0, :, :-1, :-1].detach())
    moved.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_shifts_come_from_the_given_stream_within_one_pixel() -> None:
    a = draw_shifts(1000, torch.Generator().manual_seed(3))
    b = draw_shifts(1000, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (2, 1000)
    assert set(a.unique().tolist()) == set(range(-MAX_SHIFT, MAX_SHIFT + 1))


def test_mode_seeking_is_large_for_copies_and_small_for_variety() -> None:
    z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
    same = torch.rand(8, 1, 8, 8)
    copies = mode_seeking_loss(same, same.clone(), z_a, z_b)
    varied = mode_seeking_loss(same, torch.rand(8, 1, 8, 8), z_a, z_b)
    assert copies > 1000 * varied
    assert torch.isfinite(copies)


@pytest.mark.parametrize(
    ("config", "translates", "mode_seeking"),
    [
        (TrainConfig(conditional=True), True, 0.025),  # the measured mlp recipe
        (TrainConfig(conditional=True, architecture="dcgan"), False, 0.0),
        (TrainConfig(), False, 0.0),  # unconditional models are untouched
        (TrainConfig(mode_seeking=0.5), False, 0.0),
        (TrainConfig(conditional=True, augment="none", mode_seeking=0.0), False, 0.0),
        (
            TrainConfig(
                architecture="dcgan", conditional=True, augment="translate", mode_seeking=0.1
            ),
            True,
            0.1,
        ),  # fmt: skip
        (TrainConfig(augment="translate"), True, 0.0),
    ],
)
def test_auto_defaults_resolve_by_architecture(
    config: TrainConfig, translates: bool, mode_seeking: float
) -> None:
    assert config.translates_d_inputs() is translates
    assert config.mode_seeking_weight() == mode_seeking


@pytest.mark.parametrize(
    ("field", "value"), [("augment", "flip"), ("mode_seeking", -1.0), ("class_loss", -0.1)]
)
def test_bad_regulariser_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})
