"""How big the command line draws pictures by default: readable, pixels kept square."""

from __future__ import annotations

import math

# A picture written without --scale is upscaled by a whole factor (nearest neighbour) to at
# least this many pixels on its long side: an 8x8 digit alone becomes 256 px, a grid of 16
# (37 px) 259 px; 28 px MNIST images 280 px.
READABLE_PX = 256
# The largest default factor: one 8x8 image at 32x is 256 px. (The service may allow less:
# its GANSERVE_MAX_SCALE, 16 by default; `models sample` then uses the service's limit.)
MAX_DEFAULT_SCALE = 32


def picture_size(height: int, width: int, n: int, nrow: int | None, padding: int = 1) -> int:
    """The long side, in pixels, of one image (n == 1) or a grid of n laid out nrow per row."""
    if n <= 1:
        return max(height, width)
    cols = min(nrow or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / cols)
    return max(rows * (height + padding) + padding, cols * (width + padding) + padding)


def readable_scale(long_side: int, target: int = READABLE_PX) -> int:
    """The smallest whole factor that brings `long_side` to `target` pixels (1 if it is)."""
    return max(1, min(MAX_DEFAULT_SCALE, math.ceil(target / max(long_side, 1))))
