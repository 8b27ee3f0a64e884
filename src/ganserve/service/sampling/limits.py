"""What a sampling request may ask for (DESIGN §8): checked before anything is rendered.

Images per request, integer scale and pixels per response come from the settings; over a limit
is a 413 naming the parameter and the limit (`PayloadTooLargeError`). A value the model cannot
take (a label, a step count) is a 422 naming the valid ones (`InvalidInputError`).
The checks that need no model run before the registry is read; those that do (labels, pixels)
once the version is resolved, still before the generator is loaded or run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ganserve.gan.config import ModelSpec
from ganserve.gan.sample import consecutive_seeds, grid_shape
from ganserve.service.errors import InvalidInputError, PayloadTooLargeError
from ganserve.service.registry.schemas import BulkSamplesIn
from ganserve.service.registry.versions import class_names
from ganserve.settings import Settings

MIN_STEPS, MAX_STEPS = 2, 64  # frames of an interpolation strip
_CLASSES_SHOWN = 20  # class names listed in a 422 at most


def check_count(n: int, limit: int, field: str) -> None:
    if n > limit:
        raise PayloadTooLargeError(
            f"{field}: at most {limit} images per request, got {n}", field=field, limit=limit
        )


# The noise of one seed under sampling contract 1 (gan/sample.py) costs its draws (dim / p,
# p = the chance a draw lands within the truncation) and its redraw rounds (until the last of
# dim entries lands: about 1 + ln(dim) / -ln(1 - p), one torch call each). Measured on a
# 2-core CPU: samples.png n=256, dim 100, truncation 0.05 took 1.6 s; bulk n=10000, dim 4096:
# 115 s. Contract 2 draws truncated noise in one pass: a float64 uniform and its inverse
# normal CDF per entry, whatever the truncation (bench/truncation.py: about 41 ns an entry at
# dim 4096 on one thread, so bulk n=10000 at dim 4096 is 1.7 s), plus an untruncated draw for
# a conditional model's default label.
SECONDS_PER_DRAW = 4e-9
SECONDS_PER_ROUND = 6e-5
SECONDS_PER_TRUNCATED_ENTRY = 4e-8  # contract 2


def noise_work_s(spec: ModelSpec, count: int, truncation: float | None) -> float:
    """Estimated CPU-seconds to draw the noise of `count` seeds."""
    dim = spec.noise_dim
    if truncation is not None and spec.sampling_contract >= 2:
        per_entry = SECONDS_PER_TRUNCATED_ENTRY + SECONDS_PER_DRAW
        return count * (dim * per_entry + SECONDS_PER_ROUND)
    if truncation is None:
        inside = 1.0
    elif spec.noise_distribution == "uniform":
        inside = min(1.0, truncation)
    else:
        inside = math.erf(truncation / math.sqrt(2.0))
    rounds = 1.0 if inside >= 1.0 else 1.0 + math.log(dim) / -math.log1p(-inside)
    return count * (dim / inside * SECONDS_PER_DRAW + rounds * SECONDS_PER_ROUND)


def check_work(
    spec: ModelSpec, count: int, truncation: float | None, settings: Settings, field: str
) -> None:
    """413 when drawing the noise (contract 1: truncation's redraws) would cost over the budget."""
    estimate = noise_work_s(spec, count, truncation)
    if estimate > settings.max_sample_work_s:
        redraws = truncation is not None and spec.sampling_contract == 1
        raise PayloadTooLargeError(
            f"{field}: {count} images with truncation {truncation} would take about "
            f"{estimate:.1f} CPU-seconds to draw their noise (noise dim {spec.noise_dim}); "
            f"the limit is {settings.max_sample_work_s:g} s: ask for fewer images"
            + (" or a larger truncation" if redraws else ""),
            field="truncation" if redraws else field,
            limit=settings.max_sample_work_s,
        )


def check_scale(scale: int, settings: Settings) -> None:
    if scale > settings.max_scale:
        raise PayloadTooLargeError(
            f"scale: at most {settings.max_scale}, got {scale}",
            field="scale",
            limit=settings.max_scale,
        )


def check_labels(spec: ModelSpec, labels: Sequence[int], field: str) -> None:
    """Labels only for conditional models, each a class of the model."""
    if not labels:
        return
    if not spec.conditional:
        raise InvalidInputError(
            f"{field}: this model is not conditional, it takes no class label; omit {field}",
            field=field,
        )
    names = class_names(spec)
    for label in labels:
        if not 0 <= label < spec.num_classes:
            shown = ", ".join(f"{i}={n!r}" for i, n in enumerate(names[:_CLASSES_SHOWN]))
            more = ", ..." if len(names) > _CLASSES_SHOWN else ""
            raise InvalidInputError(
                f"{field}: {label} is not a class of this model; valid labels are "
                f"0..{spec.num_classes - 1} ({shown}{more})",
                field=field,
                classes=names,
            )


def check_steps(steps: int) -> None:
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise InvalidInputError(
            f"steps: must be between {MIN_STEPS} and {MAX_STEPS}, got {steps}", field="steps"
        )


def grid_size(spec: ModelSpec, n: int, nrow: int) -> tuple[int, int]:
    """(height, width) of n images, nrow per row, as gan.sample lays them out (1 image: no pad)."""
    _, h, w = spec.image_shape
    return grid_shape((h, w), n, nrow)


def check_pixels(pixels: int, settings: Settings, field: str, what: str) -> None:
    if pixels > settings.max_output_pixels:
        raise PayloadTooLargeError(
            f"{field}: {what} would have {pixels} pixels, above the limit of "
            f"{settings.max_output_pixels} per response",
            field=field,
            limit=settings.max_output_pixels,
        )


def check_picture(
    spec: ModelSpec, n: int, nrow: int, scale: int, settings: Settings, field: str, what: str
) -> None:
    """The pixels of n images laid out nrow per row and upscaled, against the limit.

    Over it, the 413 names `scale` when upscaling, else `field` (the count's parameter).
    """
    height, width = grid_size(spec, n, nrow)
    check_pixels(height * width * scale**2, settings, "scale" if scale > 1 else field, what)


def bulk_seeds(request: BulkSamplesIn, settings: Settings) -> list[int]:
    """The seeds of a bulk request: `seeds`, or `n` from `seed` (default 0), never both."""
    if request.seeds is not None:
        if request.n is not None or request.seed is not None:
            raise InvalidInputError(
                "seeds: give either `seeds` or `n` (with an optional `seed`), not both",
                field="seeds",
            )
        check_count(len(request.seeds), settings.max_bulk_samples, "seeds")
        return list(request.seeds)
    if request.n is None:
        raise InvalidInputError(
            "n: give `n` (how many images, from `seed`) or `seeds` (one per image)", field="n"
        )
    check_count(request.n, settings.max_bulk_samples, "n")
    return consecutive_seeds(request.seed or 0, request.n)


def bulk_labels(spec: ModelSpec, labels: int | list[int] | None, count: int) -> list[int] | None:
    """One label per image from `labels` (one for all, or one each); None: drawn per seed."""
    if labels is None:
        return None
    per_image = [labels] * count if isinstance(labels, int) else list(labels)
    if len(per_image) != count:
        raise InvalidInputError(
            f"labels: give one label for all images or one per image ({count}), "
            f"got {len(per_image)}",
            field="labels",
        )
    check_labels(spec, per_image, "labels")
    return per_image
