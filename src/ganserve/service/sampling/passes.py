"""Generator forward passes of fixed shapes, so an image's bits never depend on its batch.

CPU kernels choose their algorithm by batch size and thread count: the same row can come out
of a 1-row and a 300-row pass with different last bits. Every pass therefore has one of a few
fixed row counts (the last one padded with zero rows). The reference is REFERENCE_ROWS; the
other sizes of SIZES are used only where a check at first use (per generator and torch thread
count) shows that they give every row exactly the bits REFERENCE_ROWS-row passes give it.
So an image's pixels depend only on (version, seed, label, truncation): alone, in a coalesced
batch, in a grid, a bulk download or at an interpolation's end.

Why several sizes: a pass costs a fixed part (the weights are read once) plus a part per row.
Measured on this project's 2-core machine for the reference MLP at 1 thread: 4 rows 0.8 ms,
8 rows 0.9 ms, 16 rows 1.2 ms, 32 rows 2.0 ms, 64 rows 3.8 ms (bench/README.md). One image in
a 4-row pass instead of a 16-row one saves a third of its forward; 1-3 row passes use other
kernels (matrix-vector) and do not match, which is why none is smaller than 4.
"""

from __future__ import annotations

import threading
import weakref

import torch

from ganserve.gan.models import Generator
from ganserve.gan.sample import to_uint8

REFERENCE_ROWS = 16  # the pass every other size must match bit for bit
SIZES = (4, 8, 16, 32, 64)  # candidate rows of a pass, ascending; REFERENCE_ROWS among them
_CHECK_SEED = 20261126  # the random rows of the check (any seed: kernels do not branch on values)

_exact: weakref.WeakKeyDictionary[Generator, dict[int, tuple[int, ...]]] = (
    weakref.WeakKeyDictionary()
)
_exact_lock = threading.Lock()


def forward(generator: Generator, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """(N, noise_dim) noise [+ (N,) labels] -> (N, H, W, C) uint8, in passes of exact sizes."""
    count = z.shape[0]
    parts: list[torch.Tensor] = []
    with torch.inference_mode():
        for start, size in plan(count, exact_sizes(generator)):
            z_rows = z[start : start + size]
            y_rows = None if labels is None else labels[start : start + size]
            rows = z_rows.shape[0]
            if rows < size:  # pad: same shape, same kernels, same bits
                z_rows = torch.cat([z_rows, z_rows.new_zeros(size - rows, z.shape[1])])
                if y_rows is not None:
                    y_rows = torch.cat([y_rows, y_rows.new_zeros(size - rows)])
            parts.append(to_uint8(generator(z_rows, y_rows)[:rows]))
    if not parts:
        _, h, w = generator.spec.image_shape
        return torch.empty(0, h, w, generator.spec.channels, dtype=torch.uint8)
    return torch.cat(parts)


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


def exact_sizes(generator: Generator) -> tuple[int, ...]:
    """The sizes of SIZES whose passes give every row the bits of REFERENCE_ROWS-row passes.

    Measured once per generator and torch thread count (kernels are chosen by shape and
    threads), on random rows and labels: whole passes, and passes half padded with zeros.
    Kernels do not branch on values, so equal bits here mean equal bits for every input.
    """
    threads = torch.get_num_threads()
    with _exact_lock:
        known = _exact.setdefault(generator, {})
        if threads not in known:
            known[threads] = tuple(
                size for size in SIZES if size == REFERENCE_ROWS or _matches(generator, size)
            )
        return known[threads]


def _matches(generator: Generator, size: int) -> bool:
    spec = generator.spec
    rows = max(size, REFERENCE_ROWS) * 2
    rng = torch.Generator().manual_seed(_CHECK_SEED)
    z = torch.randn(rows, spec.noise_dim, generator=rng)
    y = torch.randint(spec.num_classes, (rows,), generator=rng) if spec.conditional else None

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
