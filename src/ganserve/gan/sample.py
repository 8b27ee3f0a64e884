"""Seeds -> noise -> generator -> uint8 images -> grids -> PNG bytes.

Determinism contract (DESIGN §8): noise for image i is drawn on the CPU from
`torch.Generator().manual_seed(seeds[i])`, so it never depends on the device, the batch it
is part of, or the other images of the request.

Truncation resamples: every entry of z with |z| > truncation is redrawn from the same
seeded generator until none is left (BigGAN's truncation trick). It applies to both
distributions; for uniform noise a threshold >= 1 changes nothing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ganserve.gan.config import ModelSpec
from ganserve.gan.errors import ConfigError
from ganserve.gan.models import Generator

MAX_TRUNCATION_REDRAWS = 1000


def _draw(count: int, distribution: str, rng: torch.Generator) -> torch.Tensor:
    if distribution == "normal":
        return torch.randn(count, generator=rng)
    return torch.rand(count, generator=rng) * 2.0 - 1.0  # U(-1, 1)


def validate_truncation(truncation: float | None) -> None:
    if truncation is not None and not (math.isfinite(truncation) and truncation > 0):
        raise ConfigError("truncation", f"must be a positive number, got {truncation}")


def noise_for_seed(
    seed: int, dim: int, distribution: str, truncation: float | None = None
) -> tuple[torch.Tensor, torch.Generator]:
    """(dim,) noise for one seed, and the generator positioned after it (for a default label)."""
    rng = torch.Generator().manual_seed(seed)
    z = _draw(dim, distribution, rng)
    if truncation is not None:
        for _ in range(MAX_TRUNCATION_REDRAWS):
            outside = z.abs() > truncation
            count = int(outside.sum())
            if count == 0:
                break
            z[outside] = _draw(count, distribution, rng)
        else:
            raise ConfigError("truncation", f"{truncation} is too small to sample from")
    return z, rng


def make_noise(
    seeds: Sequence[int],
    spec: ModelSpec,
    truncation: float | None = None,
    labels: Sequence[int | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, noise_dim) CPU noise and, for conditional models, (N,) labels.

    A conditional model given no label for image i draws it from seed i's generator, after z.
    """
    validate_truncation(truncation)
    if labels is not None and len(labels) != len(seeds):
        raise ConfigError("labels", f"need one label per seed ({len(seeds)}), got {len(labels)}")
    if labels is not None and not spec.conditional and any(x is not None for x in labels):
        raise ConfigError("label", "this model is not conditional; it takes no labels")
    rows: list[torch.Tensor] = []
    chosen: list[int] = []
    for i, seed in enumerate(seeds):
        z, rng = noise_for_seed(seed, spec.noise_dim, spec.noise_distribution, truncation)
        rows.append(z)
        if spec.conditional:
            label = labels[i] if labels is not None else None
            if label is None:
                label = int(torch.randint(spec.num_classes, (1,), generator=rng))
            elif not 0 <= label < spec.num_classes:
                raise ConfigError(
                    "label", f"must be between 0 and {spec.num_classes - 1}, got {label}"
                )
            chosen.append(label)
    z_all = torch.stack(rows) if rows else torch.empty(0, spec.noise_dim)
    return z_all, (torch.tensor(chosen, dtype=torch.long) if spec.conditional else None)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of (D,) vectors a, b at (T,) fractions t -> (T, D)."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:
        return torch.lerp(a, b, t[:, None])
    so = torch.sin(omega)
    return (torch.sin((1.0 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[
        :, None
    ] * b


def interpolation_noise(
    seed_a: int, seed_b: int, steps: int, spec: ModelSpec, truncation: float | None = None
) -> torch.Tensor:
    """(steps, noise_dim): spherical for normal noise (stays on the shell), linear for uniform."""
    if steps < 2:
        raise ConfigError("steps", f"an interpolation needs at least 2 steps, got {steps}")
    validate_truncation(truncation)
    a, _ = noise_for_seed(seed_a, spec.noise_dim, spec.noise_distribution, truncation)
    b, _ = noise_for_seed(seed_b, spec.noise_dim, spec.noise_distribution, truncation)
    t = torch.linspace(0.0, 1.0, steps)
    if spec.noise_distribution == "normal":
        return slerp(a, b, t)
    return torch.lerp(a, b, t[:, None])


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1] -> (N, H, W, C) uint8 on the CPU."""
    scaled = ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).contiguous().cpu()


def generate(
    generator: Generator,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(N, noise_dim) CPU noise [+ (N,) labels] -> (N, H, W, C) uint8 images, G in eval mode."""
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            y = labels.to(device) if labels is not None else None
            images = generator(z.to(device), y)
    finally:
        generator.train(was_training)
    return to_uint8(images)


def make_grid(images: torch.Tensor, nrow: int, padding: int = 1) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (rows*(H+p)+p, nrow*(W+p)+p, C); nrow = images per row."""
    n, h, w, c = images.shape
    if nrow < 1:
        raise ConfigError("nrow", f"must be at least 1, got {nrow}")
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = torch.zeros(
        rows * (h + padding) + padding, cols * (w + padding) + padding, c, dtype=torch.uint8
    )
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[top : top + h, left : left + w] = images[i]
    return grid


def upscale(image: torch.Tensor, scale: int) -> torch.Tensor:
    """(H, W, C) -> (H*scale, W*scale, C), nearest neighbour (keeps pixels crisp)."""
    if scale < 1:
        raise ConfigError("scale", f"must be at least 1, got {scale}")
    if scale == 1:
        return image
    return image.repeat_interleave(scale, dim=0).repeat_interleave(scale, dim=1)


def encode_png(image: torch.Tensor | np.ndarray, compress_level: int = 6) -> bytes:
    """(H, W, C) uint8 with C in {1, 3} -> PNG bytes (no metadata, so bytes are reproducible)."""
    array = image.numpy() if isinstance(image, torch.Tensor) else image
    if array.ndim != 3 or array.shape[2] not in (1, 3) or array.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 1|3) uint8, got {array.shape} {array.dtype}")
    pil = Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def sample_png(
    generator: Generator,
    seeds: Sequence[int],
    *,
    labels: Sequence[int | None] | None = None,
    truncation: float | None = None,
    nrow: int | None = None,
    scale: int = 1,
    device: torch.device | str = "cpu",
) -> bytes:
    """One PNG for one seed, or a grid of nrow images per row for several."""
    spec = generator.spec
    z, y = make_noise(seeds, spec, truncation, labels)
    images = generate(generator, z, y, device)
    if len(seeds) == 1:
        picture = images[0]
    else:
        picture = make_grid(images, nrow or math.ceil(math.sqrt(len(seeds))))
    return encode_png(upscale(picture, scale))
