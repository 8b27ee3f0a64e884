from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from ganserve.gan.config import ModelSpec
from ganserve.gan.errors import ConfigError
from ganserve.gan.models import Generator
from ganserve.gan.sample import (
    encode_png,
    interpolation_noise,
    make_grid,
    make_noise,
    noise_for_seed,
    sample_png,
    upscale,
)

SPEC = ModelSpec("mlp", 1, 8, 16, "normal")
COND = ModelSpec("mlp", 3, 8, 16, "normal", num_classes=10)


def _generator(spec: ModelSpec) -> Generator:
    torch.manual_seed(0)
    return Generator(spec).eval()


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    g = _generator(SPEC)
    a, b, c = (sample_png(g, [seed]) for seed in (7, 7, 8))
    assert a == b and a != c
    assert a.startswith(b"\x89PNG\r\n\x1a\n")
    assert _png(a).size == (8, 8) and _png(a).mode == "L"


def test_noise_is_per_seed_not_per_batch() -> None:
    alone, _ = make_noise([5], SPEC)
    batch, _ = make_noise([1, 5, 9], SPEC)
    assert torch.equal(alone[0], batch[1])


def test_uniform_noise_range_and_normal_statistics() -> None:
    z, _ = noise_for_seed(0, 20000, "uniform")
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.99 and z.max() > 0.99
    z, _ = noise_for_seed(0, 20000, "normal")
    assert abs(z.mean().item()) < 0.03 and abs(z.std().item() - 1) < 0.03


def test_truncation_resamples_outliers_and_keeps_the_rest() -> None:
    full, _ = noise_for_seed(3, 500, "normal")
    cut, _ = noise_for_seed(3, 500, "normal", truncation=0.5)
    assert cut.abs().max() <= 0.5
    inside = full.abs() <= 0.5
    assert torch.equal(full[inside], cut[inside])
    with pytest.raises(ConfigError, match="truncation: must be a positive number"):
        make_noise([1], SPEC, truncation=0.0)


def test_grid_layout_and_upscaling() -> None:
    g = _generator(COND)
    png = sample_png(g, list(range(10)), nrow=4, scale=3)
    # 3 rows x 4 columns of 8 px images with 1 px padding, times 3
    assert _png(png).size == ((4 * 9 + 1) * 3, (3 * 9 + 1) * 3)
    assert _png(png).mode == "RGB"
    images = torch.arange(2 * 2 * 2, dtype=torch.uint8).view(2, 2, 2, 1)
    grid = make_grid(images, nrow=2)
    assert grid.shape == (4, 7, 1) and grid[1, 1, 0] == 0 and grid[1, 4, 0] == 4
    assert upscale(grid, 2).shape == (8, 14, 1)


def test_labels_select_classes() -> None:
    g = _generator(COND)
    _, labels = make_noise([1, 2, 3], COND, labels=[4, None, 9])
    assert labels is not None and labels[0] == 4 and labels[2] == 9 and 0 <= labels[1] < 10
    assert sample_png(g, [1], labels=[3]) != sample_png(g, [1], labels=[4])
    assert sample_png(g, [1], labels=[3]) == sample_png(g, [1], labels=[3])
    with pytest.raises(ConfigError, match="label: must be between 0 and 9"):
        make_noise([1], COND, labels=[10])
    with pytest.raises(ConfigError, match="label: this model is not conditional"):
        make_noise([1], SPEC, labels=[1])


def test_interpolation_ends_at_both_seeds() -> None:
    path = interpolation_noise(1, 2, 5, SPEC)
    a, _ = noise_for_seed(1, 16, "normal")
    b, _ = noise_for_seed(2, 16, "normal")
    assert path.shape == (5, 16)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    # spherical: the midpoint keeps a norm between the ends, unlike the linear midpoint
    assert path[2].norm() > ((a + b) / 2).norm()
    uniform = ModelSpec("mlp", 1, 8, 16, "uniform")
    lin = interpolation_noise(1, 2, 3, uniform)
    assert torch.allclose(lin[1], (lin[0] + lin[2]) / 2, atol=1e-6)
    with pytest.raises(ConfigError, match="steps"):
        interpolation_noise(1, 2, 1, SPEC)


def test_encode_png_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="expected"):
        encode_png(torch.zeros(4, 4, 2, dtype=torch.uint8))
