"""The one pixel pipeline: seeds -> noise -> fixed-shape forward -> uint8 -> grid -> PNG.

The CLI (`ganserve sample`), training previews, the API's PNGs, interpolation strips and bulk
exports all go through it, so the same (version, seed, label, truncation) gives the same bytes
everywhere (DESIGN §8); the service adds only HTTP and batching.

Determinism contract (DESIGN §8): noise for image i is drawn on the CPU from
`torch.Generator().manual_seed(seeds[i])`, so it never depends on the device, the batch it
is part of, or the other images of the request.

Truncation (BigGAN's truncation trick) keeps every entry of z within [-t, t]. How, is the
model's sampling contract (`ModelSpec.sampling_contract`, recorded in its description), so a
model version's bytes never change when ganserve does:

- contract 1 (models exported before contracts were numbered): every entry with |z| > t is
  redrawn from the seed's generator until none is left (at most MAX_TRUNCATION_REDRAWS
  rounds). Its cost grows without bound as t shrinks (dim / P(|z| <= t) draws, one round
  per batch of stragglers); the API's work budget refuses what would take too long.
  A conditional model's default label is drawn after the last redraw.
- contract 2 (every model trained since): one pass, cost linear in the entries whatever t
  is. Normal noise: u ~ U(0, 1) in float64 from the seed's generator, one per entry, and
  z = ndtri(ndtr(-t) + u * (ndtr(t) - ndtr(-t))) (the inverse CDF of N(0, 1) truncated
  to [-t, t]), cast to float32 and clamped to [-t, t]. Uniform noise: the seed's U(-1, 1)
  draw scaled by min(t, 1), i.e. U(-min(t, 1), min(t, 1)). A conditional model's default
  label is the one the seed draws without truncation, so a seed keeps its class whatever t.

Without truncation both contracts draw the same noise and the same default label.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ganserve.gan import png
from ganserve.gan.config import SAMPLING_CONTRACT, ModelSpec
from ganserve.gan.errors import ConfigError
from ganserve.gan.models import Generator

MAX_TRUNCATION_REDRAWS = 1000  # contract 1's rounds before a truncation counts as too small
# Contract 2, normal noise: a bound above this changes nothing measurable (P(|z| > 10) is
# about 1.5e-23) and keeps ndtr(-t) well above 0, so ndtri never returns -inf.
NORMAL_TAIL = 10.0
MAX_SEED = 2**63 - 1  # seeds are 0..MAX_SEED
GRID_PADDING = 1  # pixels between and around grid cells
SAMPLE_CHUNK = 256  # images whose noise and pixels are made at once (bounds memory)


def draw_noise(
    shape: int | tuple[int, ...], distribution: str, rng: torch.Generator
) -> torch.Tensor:
    """Noise of `shape` from `rng`: N(0, 1) for "normal", U(-1, 1) for "uniform"."""
    size = (shape,) if isinstance(shape, int) else shape
    if distribution == "normal":
        return torch.randn(size, generator=rng)
    return torch.rand(size, generator=rng) * 2.0 - 1.0  # U(-1, 1)


_draw = draw_noise  # the name gan/train.py imported it under before it was public


def consecutive_seeds(first: int, n: int) -> list[int]:
    """The seeds of n images from `first`: image i uses first + i, wrapping past MAX_SEED to 0.

    Seeds are 0..MAX_SEED (a signed 64-bit integer's range, which the API and databases
    store); a run that starts near the top goes on from 0 instead of leaving the range.
    """
    return [(first + i) % (MAX_SEED + 1) for i in range(n)]


def validate_truncation(truncation: float | None) -> None:
    if truncation is not None and not (math.isfinite(truncation) and truncation > 0):
        raise ConfigError("truncation", f"must be a positive number, got {truncation}")


def noise_for_seed(
    seed: int,
    dim: int,
    distribution: str,
    truncation: float | None = None,
    contract: int = SAMPLING_CONTRACT,
) -> tuple[torch.Tensor, torch.Generator]:
    """(dim,) noise for one seed under a sampling contract, and the generator after it."""
    rng = torch.Generator().manual_seed(seed)
    if truncation is None:
        return draw_noise(dim, distribution, rng), rng
    if contract == 1:
        return _redrawn_noise(dim, distribution, truncation, rng), rng
    return truncated_noise(dim, distribution, truncation, rng), rng


def truncated_noise(
    dim: int, distribution: str, truncation: float, rng: torch.Generator
) -> torch.Tensor:
    """Contract 2: (dim,) noise within [-truncation, truncation], one draw per entry."""
    if distribution == "uniform":
        return draw_noise(dim, distribution, rng) * min(truncation, 1.0)  # U(-c, c)
    bound = min(truncation, NORMAL_TAIL)
    low, high = _normal_cdf(bound)
    p = torch.rand(dim, generator=rng, dtype=torch.float64)  # (dim,) u in [0, 1)
    p.mul_(high - low).add_(low)  # ndtr(-t) + u * (ndtr(t) - ndtr(-t)), in place
    z = torch.special.ndtri(p, out=p).to(torch.float32)
    return z.clamp_(-bound, bound)  # float rounding may step just past the bound


@functools.lru_cache(maxsize=64)
def _normal_cdf(bound: float) -> tuple[float, float]:
    """(ndtr(-bound), ndtr(bound)) in float64; a request's seeds share its truncation."""
    low, high = torch.special.ndtr(torch.tensor([-bound, bound], dtype=torch.float64)).tolist()
    return low, high


def _redrawn_noise(
    dim: int, distribution: str, truncation: float, rng: torch.Generator
) -> torch.Tensor:
    """Contract 1: redraw every |z| > truncation from `rng` until none is left."""
    z = draw_noise(dim, distribution, rng)
    for _ in range(MAX_TRUNCATION_REDRAWS):
        outside = z.abs() > truncation
        count = int(outside.sum())
        if count == 0:
            return z
        z[outside] = draw_noise(count, distribution, rng)
    raise ConfigError("truncation", f"{truncation} is too small to sample from")


def _label_stream(
    seed: int, spec: ModelSpec, truncation: float | None, after_noise: torch.Generator
) -> torch.Generator:
    """The generator a conditional model's default label is drawn from (see the contracts)."""
    if truncation is None or spec.sampling_contract == 1:
        return after_noise
    if spec.noise_distribution == "uniform":
        return after_noise  # contract 2 drew exactly the untruncated uniforms (then scaled)
    rng = torch.Generator().manual_seed(seed)  # contract 2: where the untruncated noise ends
    draw_noise(spec.noise_dim, spec.noise_distribution, rng)
    return rng


def make_noise(
    seeds: Sequence[int],
    spec: ModelSpec,
    truncation: float | None = None,
    labels: Sequence[int | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, noise_dim) CPU noise and, for conditional models, (N,) labels.

    A conditional model given no label for image i draws it from seed i's generator, after
    z (contract 2: after the untruncated z, so truncation never changes a seed's class).
    """
    validate_truncation(truncation)
    if labels is not None and len(labels) != len(seeds):
        raise ConfigError("labels", f"need one label per seed ({len(seeds)}), got {len(labels)}")
    if labels is not None and not spec.conditional and any(x is not None for x in labels):
        raise ConfigError("label", "this model is not conditional; it takes no labels")
    rows: list[torch.Tensor] = []
    chosen: list[int] = []
    for i, seed in enumerate(seeds):
        z, rng = noise_for_seed(
            seed, spec.noise_dim, spec.noise_distribution, truncation, spec.sampling_contract
        )
        rows.append(z)
        if spec.conditional:
            label = labels[i] if labels is not None else None
            if label is None:
                rng = _label_stream(seed, spec, truncation, rng)
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
    a, _ = noise_for_seed(seed_a, spec.noise_dim, spec.noise_distribution, truncation,
                          spec.sampling_contract)  # fmt: skip
    b, _ = noise_for_seed(seed_b, spec.noise_dim, spec.noise_distribution, truncation,
                          spec.sampling_contract)  # fmt: skip
    t = torch.linspace(0.0, 1.0, steps)
    if spec.noise_distribution == "normal":
        return slerp(a, b, t)
    return torch.lerp(a, b, t[:, None])


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1] -> (N, H, W, C) uint8 on the CPU.

    round((x + 1) * 127.5) clamped to [0, 255], in float32, rounding half to even. In numpy:
    the same IEEE steps as torch's ops, without their dispatch cost on a few small arrays
    (56 -> 33 us for a 4-row pass of 28 px images).
    """
    scaled = np.add(images.detach().float().cpu().numpy(), np.float32(1.0))
    np.multiply(scaled, np.float32(127.5), out=scaled)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    pixels = torch.from_numpy(scaled.astype(np.uint8))  # (N, C, H, W)
    n, c, h, w = pixels.shape
    return pixels.view(n, h, w, 1) if c == 1 else pixels.permute(0, 2, 3, 1).contiguous()


# ----------------------------------------------------------------------------- forward passes
#
# CPU kernels choose their algorithm by batch size and thread count: the same row can come out
# of a 1-row and a 300-row pass with different last bits. Every pass therefore has one of a few
# fixed row counts (the last one padded with zero rows). The reference is REFERENCE_ROWS; the
# other sizes of PASS_SIZES are used only where a check at first use (per generator and torch
# thread count) shows that they give every row exactly the bits REFERENCE_ROWS-row passes give
# it. So an image's pixels depend only on (version, seed, label, truncation): alone, in a
# coalesced batch, in a grid, a bulk download, an interpolation or a training preview.
#
# Why several sizes: a pass costs a fixed part (the weights are read once) plus a part per row.
# Measured on this project's 2-core machine for the reference MLP at 1 thread: 4 rows 0.8 ms,
# 8 rows 0.9 ms, 16 rows 1.2 ms, 32 rows 2.0 ms, 64 rows 3.8 ms (bench/README.md). One image in
# a 4-row pass instead of a 16-row one saves a third of its forward; 1-3 row passes use other
# kernels (matrix-vector) and do not match, which is why none is smaller than 4.

REFERENCE_ROWS = 16  # the pass every other size must match bit for bit
PASS_SIZES = (4, 8, 16, 32, 64)  # candidate rows of a pass, ascending; REFERENCE_ROWS among them
_CHECK_SEED = 20261126  # the random rows of the check (any seed: kernels do not branch on values)

_exact: weakref.WeakKeyDictionary[Generator, dict[int, tuple[int, ...]]] = (
    weakref.WeakKeyDictionary()
)
_exact_lock = threading.Lock()


def generate(
    generator: Generator,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(N, noise_dim) CPU noise [+ (N,) labels] -> (N, H, W, C) uint8 images, G in eval mode.

    In passes of the fixed sizes above, so each row's bits do not depend on N.
    """
    device = torch.device(device)
    z = z.to(device)  # no copy when it is there already (the CPU: the service, the CLI)
    labels = None if labels is None else labels.to(device)
    was_training = generator.training
    if was_training:
        generator.eval()
    try:
        return _forward(generator, z, labels, device)
    finally:
        if was_training:
            generator.train()


def _forward(
    generator: Generator, z: torch.Tensor, labels: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    count = z.shape[0]
    parts: list[torch.Tensor] = []
    # a hooked module, or one without it (a stand-in generator), runs through its call
    unhooked = getattr(generator, "forward_unhooked", None)
    hooked = generator._forward_hooks or generator._forward_pre_hooks
    run = generator if hooked or unhooked is None else unhooked
    with torch.inference_mode():
        for start, size in plan(count, exact_sizes(generator, device)):
            z_rows = z[start : start + size]
            y_rows = None if labels is None else labels[start : start + size]
            rows = z_rows.shape[0]
            if rows < size:  # pad: same shape, same kernels, same bits
                z_rows = torch.cat([z_rows, z_rows.new_zeros(size - rows, z.shape[1])])
                if y_rows is not None:
                    y_rows = torch.cat([y_rows, y_rows.new_zeros(size - rows)])
            parts.append(to_uint8(run(z_rows, y_rows)[:rows]))
    if not parts:
        _, h, w = generator.spec.image_shape
        return torch.empty(0, h, w, generator.spec.channels, dtype=torch.uint8)
    return parts[0] if len(parts) == 1 else torch.cat(parts)  # one pass: no second copy


def plan(count: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """(first row, rows) of the passes over `count` rows, with pass sizes from `sizes` (ascending).

    Passes of the largest size while at least that many rows remain; the rest in one padded
    pass of the smallest size that holds it (one pass costs less than two smaller ones).
    """
    largest = sizes[-1]
    passes: list[tuple[int, int]] = []
    start = 0
    while count - start >= largest:
        passes.append((start, largest))
        start += largest
    if start < count:
        rest = count - start
        passes.append((start, next(size for size in sizes if size >= rest)))
    return passes


def exact_sizes(generator: Generator, device: torch.device | str = "cpu") -> tuple[int, ...]:
    """The sizes of PASS_SIZES whose passes give every row the bits of REFERENCE_ROWS-row passes.

    Measured once per generator and torch thread count (kernels are chosen by shape and
    threads), on random rows and labels: whole passes, and passes half padded with zeros.
    Kernels do not branch on values, so equal bits here mean equal bits for every input.
    """
    threads = torch.get_num_threads()
    with _exact_lock:
        known = _exact.setdefault(generator, {})
        if threads not in known:
            known[threads] = tuple(
                size
                for size in PASS_SIZES
                if size == REFERENCE_ROWS or _matches(generator, size, torch.device(device))
            )
        return known[threads]


def _matches(generator: Generator, size: int, device: torch.device) -> bool:
    spec = generator.spec
    rows = max(size, REFERENCE_ROWS) * 2
    rng = torch.Generator().manual_seed(_CHECK_SEED)
    z = torch.randn(rows, spec.noise_dim, generator=rng).to(device)
    y = torch.randint(spec.num_classes, (rows,), generator=rng) if spec.conditional else None
    y = None if y is None else y.to(device)

    def passes(n: int, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        parts = [
            generator(z[i : i + n], None if y is None else y[i : i + n])
            for i in range(0, z.shape[0], n)
        ]
        return torch.cat(parts)

    with torch.inference_mode():
        reference = passes(REFERENCE_ROWS, z, y)
        if not torch.equal(passes(size, z, y), reference):
            return False
        half = size // 2  # a padded pass: its first half real rows, the rest zeros
        padded_z = torch.cat([z[:half], z.new_zeros(size - half, spec.noise_dim)])
        padded_y = None if y is None else torch.cat([y[:half], y.new_zeros(size - half)])
        return torch.equal(generator(padded_z, padded_y)[:half], reference[:half])


def transpose_dense_weights(generator: Generator) -> int:
    """Store each dense layer's weight transposed where every pass size keeps its bits.

    For a generator loaded for sampling (`checkpoint.load_generator`), never for one being
    trained. nn.Linear computes x @ W.T with W stored (out, in) row-major, so the CPU BLAS
    gets a transposed operand. Stored as the transposed view of an (in, out) matrix (the same
    values, another memory layout), W.T reaches it row-major: for the reference MLP a 4-row
    pass took 865 -> 754 us at 1 thread, larger passes about the same (bench/README.md).
    Checked per layer, on the device and at the torch thread count of the call: every size
    of PASS_SIZES must give each row the bits the stored layout gives it (on random rows;
    kernels do not branch on values), so no image's bytes change. A layer that fails keeps
    its layout. Returns the number of layers changed.
    """
    changed = 0
    rng = torch.Generator().manual_seed(_CHECK_SEED)
    with torch.inference_mode():
        for layer in generator.modules():
            if not isinstance(layer, torch.nn.Linear) or not layer.weight.is_contiguous():
                continue
            weight = layer.weight.data  # (out, in), row-major
            transposed = weight.t().contiguous().t()  # (out, in) values, (in, out) in memory
            x = torch.randn(PASS_SIZES[-1], layer.in_features, generator=rng).to(weight.device)
            if all(
                torch.equal(
                    torch.nn.functional.linear(x[:size], weight, layer.bias),
                    torch.nn.functional.linear(x[:size], transposed, layer.bias),
                )
                for size in PASS_SIZES
            ):
                layer.weight.data = transposed
                changed += 1
    return changed


# ----------------------------------------------------------------------------- pictures


def grid_shape(image_hw: tuple[int, int], n: int, nrow: int) -> tuple[int, int]:
    """(height, width) of the picture of n images of (H, W), nrow per row (1 image: no grid)."""
    h, w = image_hw
    if n == 1:
        return h, w
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    return rows * (h + GRID_PADDING) + GRID_PADDING, cols * (w + GRID_PADDING) + GRID_PADDING


def default_nrow(n: int) -> int:
    """Images per grid row when none is asked for: a square-ish grid."""
    return math.ceil(math.sqrt(n))


def make_grid(
    images: torch.Tensor | np.ndarray, nrow: int, padding: int = GRID_PADDING
) -> np.ndarray:
    """(N, H, W, C) uint8 -> (rows*(H+p)+p, nrow*(W+p)+p, C) uint8; nrow = images per row.

    Cell i at row i // cols, column i % cols, `padding` zero pixels between and around cells;
    laid out in a few array operations.
    """
    array = images.numpy() if isinstance(images, torch.Tensor) else images
    if nrow < 1:
        raise ConfigError("nrow", f"must be at least 1, got {nrow}")
    n, h, w, c = array.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cells = np.zeros((rows * cols, h + padding, w + padding, c), dtype=np.uint8)
    cells[:n, :h, :w] = array
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
    body = cells.reshape(rows, cols, h + padding, w + padding, c).transpose(0, 2, 1, 3, 4)
    grid[padding:, padding:] = body.reshape(rows * (h + padding), cols * (w + padding), c)
    return grid


def upscale(image: torch.Tensor | np.ndarray, scale: int) -> np.ndarray:
    """(H, W, C) -> (H*scale, W*scale, C), nearest neighbour (keeps pixels crisp)."""
    array = image.numpy() if isinstance(image, torch.Tensor) else image
    if scale < 1:
        raise ConfigError("scale", f"must be at least 1, got {scale}")
    if scale == 1:
        return array
    return array.repeat(scale, axis=0).repeat(scale, axis=1)


def encode_png(image: torch.Tensor | np.ndarray, compress_level: int = 6) -> bytes:
    """(H, W, C) uint8 with C in {1, 3} -> PNG bytes (no metadata, so bytes are reproducible).

    Pillow's bytes (`gan.png`), without its per-file Python overhead.
    """
    array = image.numpy() if isinstance(image, torch.Tensor) else image
    return png.encode_png(array, compress_level)


def picture_png(images: torch.Tensor | np.ndarray, nrow: int | None, scale: int = 1) -> bytes:
    """(N, H, W, C) uint8 -> PNG of the one image (N = 1) or of their grid, upscaled."""
    if len(images) == 1:
        picture = images[0].numpy() if isinstance(images, torch.Tensor) else images[0]
    else:
        picture = make_grid(images, nrow or default_nrow(len(images)))
    return encode_png(upscale(picture, scale))


# ----------------------------------------------------------------------------- the whole way


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
    """One PNG for one seed, or a grid of nrow images per row for several (CLI and API)."""
    chunks = [
        chunk for chunk, _ in sample_images(generator, seeds, labels, truncation, device=device)
    ]
    return picture_png(chunks[0] if len(chunks) == 1 else torch.cat(chunks), nrow, scale)


def sample_images(
    generator: Generator,
    seeds: Sequence[int],
    labels: Sequence[int | None] | None = None,
    truncation: float | None = None,
    chunk: int = SAMPLE_CHUNK,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, list[int] | None]]:
    """(images (n, H, W, C) uint8, their labels or None) for consecutive chunks of `seeds`.

    Chunks bound the memory of a long run of seeds (bulk export); they do not change bits.
    """
    for start in range(0, len(seeds), chunk):
        part = seeds[start : start + chunk]
        part_labels = None if labels is None else list(labels[start : start + chunk])
        z, y = make_noise(part, generator.spec, truncation, part_labels)
        yield generate(generator, z, y, device), (None if y is None else y.tolist())


def interpolation_png(
    generator: Generator,
    seed_a: int,
    seed_b: int,
    steps: int,
    *,
    label: int | None = None,
    truncation: float | None = None,
    scale: int = 1,
    device: torch.device | str = "cpu",
) -> bytes:
    """A one-row strip from seed_a's image to seed_b's (slerp for normal noise, lerp uniform).

    A conditional model keeps one class along the strip: `label`, or seed_a's own class.
    """
    spec = generator.spec
    z = interpolation_noise(seed_a, seed_b, steps, spec, truncation)
    y = None
    if spec.conditional:
        if label is None:
            _, drawn = make_noise([seed_a], spec, truncation)
            assert drawn is not None
            label = int(drawn[0])
        y = torch.full((steps,), label, dtype=torch.long)
    strip = make_grid(generate(generator, z, y, device), steps)
    return encode_png(upscale(strip, scale))
