"""Sampling a registered generator: bounds, PNGs and grids, interpolation strips, bulk zip/npz.

Determinism (DESIGN §8). Image i's noise comes from its own seed (`gan.sample.make_noise`), and
every forward pass has one of a few fixed shapes that give every row the same bits
(`service.passes`), so an image's pixels depend only on (version, seed, label, truncation),
whether it came alone, in a batch, a grid, a bulk download or at an interpolation's end.
Same request -> same bytes: PNGs carry no metadata, zips fixed timestamps.

Bounds (settings): images per request, integer scale and pixels per response are checked
before the generator is loaded or run; over a limit is a 413 naming the parameter and the
limit, a value the model cannot take (a label, a seed range) a 422 naming the valid ones.

The `render_*` functions are synchronous (inference + encoding); the `async` ones run them in
the thread pool, never on the event loop, and answer `If-None-Match` without rendering.

Coalescing (DESIGN §8, §11). Concurrent samples.png requests for one model go through that
model's `batching.Batcher`: one trip to the thread pool reads the registry once per version
reference in the batch, answers each request's `If-None-Match`, and renders the rest with one
`forward` over all their rows (`render_pngs`) — passes of the same fixed shapes, so every PNG
is byte-identical to the one `render_png` makes for the request alone. A request the batch
cannot serve (its generator is not loaded yet) comes back to the event loop to load it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import anyio.to_thread
import numpy as np
import torch

from ganserve.gan.config import ModelSpec
from ganserve.gan.models import Generator
from ganserve.gan.sample import (
    encode_png,
    interpolation_noise,
    make_grid,
    make_noise,
    upscale,
)
from ganserve.service.errors import InvalidInputError, PayloadTooLargeError
from ganserve.service.operations.telemetry import IMAGES_GENERATED
from ganserve.service.registry.schemas import MAX_SEED, BulkSamplesIn
from ganserve.service.registry.versions import class_names
from ganserve.service.sampling import passes
from ganserve.service.sampling.batching import Batcher, BatchStats
from ganserve.service.sampling.generator_cache import (
    CachedGenerator,
    GeneratorCache,
    Key,
    ResolvedVersion,
)
from ganserve.settings import Settings

BULK_CHUNK = 256  # images whose noise and pixels are made at once in a bulk request
MIN_STEPS, MAX_STEPS = 2, 64  # frames of an interpolation strip
GRID_PADDING = 1  # pixels between and around grid cells (gan.sample.make_grid)
RENDER_FORMAT = 1  # part of every ETag: bump when the same request would render differently
IMMUTABLE = "max-age=31536000, immutable"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: equal requests, equal bytes
_PINNED = re.compile(r"^v?[0-9]{1,9}$")  # a version number, as store.registry.resolve reads it
_CLASSES_SHOWN = 20


@dataclass(frozen=True)
class Rendered:
    """An HTTP answer: 200 with a body, or 304 (empty body, media_type None)."""

    status: int
    body: bytes
    media_type: str | None
    headers: dict[str, str]


# ----------------------------------------------------------------------------- bounds


def check_count(n: int, limit: int, field: str) -> None:
    if n > limit:
        raise PayloadTooLargeError(
            f"{field}: at most {limit} images per request, got {n}", field=field, limit=limit
        )


def check_scale(scale: int, settings: Settings) -> None:
    if scale > settings.max_scale:
        raise PayloadTooLargeError(
            f"scale: at most {settings.max_scale}, got {scale}",
            field="scale",
            limit=settings.max_scale,
        )


def seed_range(seed: int, n: int, field: str = "seed") -> list[int]:
    """Seeds seed, seed + 1, ..., seed + n - 1; all must be at most 2**63 - 1."""
    if seed + n - 1 > MAX_SEED:
        raise InvalidInputError(
            f"{field}: seed + n - 1 must be at most {MAX_SEED} (seeds are 0..2**63-1)",
            field=field,
        )
    return list(range(seed, seed + n))


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
    """(height, width) of n images, nrow per row, as make_grid lays them out (1 image: no pad)."""
    _, h, w = spec.image_shape
    if n == 1:
        return h, w
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    return rows * (h + GRID_PADDING) + GRID_PADDING, cols * (w + GRID_PADDING) + GRID_PADDING


def check_pixels(pixels: int, settings: Settings, field: str, what: str) -> None:
    if pixels > settings.max_output_pixels:
        raise PayloadTooLargeError(
            f"{field}: {what} would have {pixels} pixels, above the limit of "
            f"{settings.max_output_pixels} per response",
            field=field,
            limit=settings.max_output_pixels,
        )


def default_nrow(n: int) -> int:
    return math.ceil(math.sqrt(n))


# ----------------------------------------------------------------------------- rendering


def forward(generator: Generator, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """(N, noise_dim) noise [+ (N,) labels] -> (N, H, W, C) uint8 (`passes.forward`), counted."""
    images = passes.forward(generator, z, labels)
    IMAGES_GENERATED.inc(len(images))
    return images


def iter_images(
    cached: CachedGenerator,
    seeds: Sequence[int],
    labels: Sequence[int] | None,
    truncation: float | None,
    chunk: int = BULK_CHUNK,
) -> Iterator[tuple[torch.Tensor, list[int] | None]]:
    """(images (n, H, W, C) uint8, their labels or None) for consecutive chunks of seeds."""
    for start in range(0, len(seeds), chunk):
        part = seeds[start : start + chunk]
        part_labels = None if labels is None else list(labels[start : start + chunk])
        z, y = make_noise(part, cached.spec, truncation, part_labels)
        yield forward(cached.generator, z, y), (None if y is None else y.tolist())


def render_png(
    cached: CachedGenerator,
    seeds: Sequence[int],
    labels: Sequence[int] | None,
    truncation: float | None,
    nrow: int | None,
    scale: int,
) -> bytes:
    """One image for one seed, else a grid of nrow images per row; upscaled, as PNG."""
    images = torch.cat([chunk for chunk, _ in iter_images(cached, seeds, labels, truncation)])
    return picture_png(images.numpy(), nrow, scale)


def tile(images: np.ndarray, nrow: int, padding: int = GRID_PADDING) -> np.ndarray:
    """(N, H, W, C) uint8 -> the grid gan.sample.make_grid lays out, in a few array operations.

    Cell i at row i // cols, column i % cols, `padding` zero pixels between and around cells.
    """
    n, h, w, c = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cells = np.zeros((rows * cols, h + padding, w + padding, c), dtype=np.uint8)
    cells[:n, :h, :w] = images
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
    body = cells.reshape(rows, cols, h + padding, w + padding, c).transpose(0, 2, 1, 3, 4)
    grid[padding:, padding:] = body.reshape(rows * (h + padding), cols * (w + padding), c)
    return grid


def picture_png(images: np.ndarray, nrow: int | None, scale: int) -> bytes:
    """(N, H, W, C) uint8 -> PNG of the one image (N = 1) or of their grid, upscaled."""
    picture = images[0] if len(images) == 1 else tile(images, nrow or default_nrow(len(images)))
    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    return encode_png(picture)


def render_interpolation(
    cached: CachedGenerator,
    seed_a: int,
    seed_b: int,
    steps: int,
    label: int | None,
    truncation: float | None,
    scale: int,
) -> bytes:
    """A one-row strip from seed_a's image to seed_b's (slerp for normal noise, lerp uniform).

    A conditional model keeps one class along the strip: `label`, or seed_a's own class.
    """
    spec = cached.spec
    check_steps(steps)
    z = interpolation_noise(seed_a, seed_b, steps, spec, truncation)
    y = None
    if spec.conditional:
        if label is None:
            _, drawn = make_noise([seed_a], spec, truncation)
            assert drawn is not None
            label = int(drawn[0])
        y = torch.full((steps,), label, dtype=torch.long)
    strip = make_grid(forward(cached.generator, z, y), steps, GRID_PADDING)
    return encode_png(upscale(strip, scale))


def bulk_filename(name: str, version: int, seeds: Sequence[int], fmt: str) -> str:
    return f"{name}-v{version}-seed{seeds[0]}-n{len(seeds)}.{fmt}"


def png_name(index: int, seed: int) -> str:
    return f"{index:06d}_seed{seed}.png"


def render_bulk(
    cached: CachedGenerator,
    seeds: Sequence[int],
    labels: Sequence[int] | None,
    truncation: float | None,
    fmt: str,
) -> tuple[bytes, str, str]:
    """(file bytes, media type, filename): a zip of PNGs + labels.csv, or an .npz.

    npz arrays: images (N, H, W, C) uint8, labels (N,) int64 (-1 for unconditional models),
    seeds (N,) int64.
    """
    filename = bulk_filename(cached.name, cached.version, seeds, fmt)
    if fmt == "zip":
        return _bulk_zip(cached, seeds, labels, truncation), "application/zip", filename
    if fmt == "npz":
        return _bulk_npz(cached, seeds, labels, truncation), "application/octet-stream", filename
    raise InvalidInputError(f"format: must be 'zip' or 'npz', got {fmt!r}", field="format")


def _zip_info(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = compress_type
    info.create_system = 3  # unix, whatever the host
    info.external_attr = 0o644 << 16
    return info


def _bulk_zip(
    cached: CachedGenerator,
    seeds: Sequence[int],
    labels: Sequence[int] | None,
    truncation: float | None,
) -> bytes:
    names = class_names(cached.spec)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["file", "seed", "label", "class_name"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        index = 0
        for images, chunk_labels in iter_images(cached, seeds, labels, truncation):
            for row, image in enumerate(images):
                file = png_name(index, seeds[index])
                # PNGs are compressed already: stored, not deflated again
                archive.writestr(_zip_info(file, zipfile.ZIP_STORED), encode_png(image))
                label = None if chunk_labels is None else chunk_labels[row]
                writer.writerow(
                    [file, seeds[index], "" if label is None else label]
                    + ["" if label is None else names[label]]
                )
                index += 1
        archive.writestr(_zip_info("labels.csv", zipfile.ZIP_DEFLATED), table.getvalue())
    return buffer.getvalue()


def _bulk_npz(
    cached: CachedGenerator,
    seeds: Sequence[int],
    labels: Sequence[int] | None,
    truncation: float | None,
) -> bytes:
    c, h, w = cached.spec.image_shape
    images = np.empty((len(seeds), h, w, c), dtype=np.uint8)
    all_labels = np.full(len(seeds), -1, dtype=np.int64)
    start = 0
    for chunk, chunk_labels in iter_images(cached, seeds, labels, truncation):
        images[start : start + len(chunk)] = chunk.numpy()
        if chunk_labels is not None:
            all_labels[start : start + len(chunk)] = chunk_labels
        start += len(chunk)
    arrays: dict[str, np.ndarray] = {
        "images": images,
        "labels": all_labels,
        "seeds": np.asarray(seeds, dtype=np.int64),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = _zip_info(f"{key}.npy", zipfile.ZIP_DEFLATED)
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- HTTP answers


def etag_for(resolved: ResolvedVersion, kind: str, params: dict[str, object]) -> str:
    """A strong ETag: the weights' identity and every parameter that shapes the bytes."""
    payload = {
        "render": RENDER_FORMAT,
        "kind": kind,
        "model": resolved.name,
        "version": resolved.version,
        "identity": resolved.identity,
        **params,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:40] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: `*` or any listed tag equal to ours (weak comparison)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def cache_control(version_ref: str, settings: Settings) -> str:
    """Immutable for a version number (its bytes never change); revalidate for an alias."""
    private = bool(settings.api_keys) and settings.protect_sampling
    if _PINNED.fullmatch(version_ref.strip().lower()):
        return ("private, " if private else "public, ") + IMMUTABLE
    return "private, no-cache" if private else "no-cache"


def model_headers(resolved: ResolvedVersion, **extra: object) -> dict[str, str]:
    headers = {"X-Model-Name": resolved.name, "X-Model-Version": str(resolved.version)}
    headers.update({key: str(value) for key, value in extra.items()})
    return headers


Prepared = tuple[dict[str, str], Callable[[CachedGenerator], bytes]]


async def serve(
    cache: GeneratorCache,
    name: str,
    version: str,
    prepare: Callable[[ResolvedVersion], Prepared],
    media_type: str,
    if_none_match: str | None = None,
) -> Rendered:
    """Resolve, validate (`prepare`), answer 304 or render, in one trip to the thread pool
    when the generator is loaded; a miss loads it first (GeneratorCache.load)."""

    def resolve_and_render() -> Rendered | tuple[ResolvedVersion, Prepared]:
        resolved = cache.resolve(name, version)
        headers, render = prepared = prepare(resolved)
        etag = headers.get("ETag")
        if etag is not None and etag_matches(if_none_match, etag):
            return Rendered(304, b"", None, headers)
        cached = cache.lookup(resolved)
        if cached is None:
            return resolved, prepared
        return Rendered(200, render(cached), media_type, headers)

    outcome = await anyio.to_thread.run_sync(resolve_and_render)
    if isinstance(outcome, Rendered):
        return outcome
    resolved, (headers, render) = outcome
    cached = await cache.load(resolved)
    body = await anyio.to_thread.run_sync(render, cached)
    return Rendered(200, body, media_type, headers)


@dataclass(frozen=True)
class PngRequest:
    """One samples.png request, checked as far as it can be without the model."""

    ref: str  # the version reference: a number or an alias
    seed: int
    n: int
    cols: int | None  # images per grid row; None for one image
    label: int | None
    truncation: float | None
    scale: int
    if_none_match: str | None = None
    seeds: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", list(range(self.seed, self.seed + self.n)))

    @property
    def labels(self) -> list[int] | None:
        return None if self.label is None else [self.label] * self.n

    @property
    def weight(self) -> int:
        """Its share of a batch: images, times the pixels upscaling adds (encoding cost)."""
        return self.n * self.scale**2


@dataclass(frozen=True)
class NotLoaded:
    """A batch's answer for a request whose generator is not loaded: load it, then render."""

    resolved: ResolvedVersion
    headers: dict[str, str]


PngOutcome = Rendered | NotLoaded


def png_headers(
    resolved: ResolvedVersion, request: PngRequest, settings: Settings
) -> dict[str, str]:
    """Checks what needs the model (label, pixels); the response headers, ETag included."""
    n, label, scale = request.n, request.label, request.scale
    check_labels(resolved.spec, [] if label is None else [label], "label")
    height, width = grid_size(resolved.spec, n, request.cols or 1)
    what = "the image" if n == 1 else f"a grid of {n} images"
    check_pixels(height * width * scale**2, settings, "scale" if scale > 1 else "n", what)
    params: dict[str, object] = {
        "seed": request.seed,
        "n": n,
        "nrow": request.cols,
        "label": label,
        "truncation": request.truncation,
        "scale": scale,
    }
    headers = model_headers(resolved, **{"X-Seed": request.seed})
    headers["ETag"] = etag_for(resolved, "samples.png", params)
    headers["Cache-Control"] = cache_control(request.ref, settings)
    return headers


def render_many(
    cached: CachedGenerator, requests: Sequence[PngRequest]
) -> list[bytes | BaseException]:
    """The PNG of each request (as render_png makes it alone), from one `forward` of all rows.

    A request whose noise cannot be drawn fails alone; the others are rendered.
    """
    spec = cached.spec
    outcomes: list[bytes | BaseException] = []
    noise: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for request in requests:
        try:
            z, y = make_noise(request.seeds, spec, request.truncation, request.labels)
        except Exception as exc:  # e.g. a truncation too small to sample from
            outcomes.append(exc)
            continue
        outcomes.append(b"")
        noise.append(z)
        if y is not None:
            labels.append(y)
    if not noise:
        return outcomes
    y_all = torch.cat(labels) if spec.conditional else None
    images = forward(cached.generator, torch.cat(noise), y_all).numpy()
    start = 0
    for i, request in enumerate(requests):
        if isinstance(outcomes[i], BaseException):
            continue
        pictures = images[start : start + request.n]
        start += request.n
        try:
            outcomes[i] = picture_png(pictures, request.cols, request.scale)
        except Exception as exc:
            outcomes[i] = exc
    return outcomes


def render_pngs(
    cache: GeneratorCache, settings: Settings, name: str, requests: Sequence[PngRequest]
) -> list[PngOutcome | BaseException]:
    """One batch of samples.png requests for model `name`, in a worker thread.

    The registry is read once per distinct version reference; each request is checked and
    answered 304 on its own; the rest of each version's requests are rendered together.
    """
    outcomes: list[PngOutcome | BaseException | None] = [None] * len(requests)
    resolutions: dict[str, ResolvedVersion | Exception] = {}
    to_render: dict[Key, tuple[ResolvedVersion, list[int], list[dict[str, str]]]] = {}
    for i, request in enumerate(requests):
        try:
            resolved = resolutions.get(request.ref)
            if resolved is None:
                try:
                    resolved = cache.resolve(name, request.ref)
                except Exception as exc:
                    resolved = exc
                resolutions[request.ref] = resolved
            if isinstance(resolved, Exception):
                raise resolved
            headers = png_headers(resolved, request, settings)
        except Exception as exc:
            outcomes[i] = exc
            continue
        if etag_matches(request.if_none_match, headers["ETag"]):
            outcomes[i] = Rendered(304, b"", None, headers)
            continue
        group = to_render.setdefault(resolved.key, (resolved, [], []))
        group[1].append(i)
        group[2].append(headers)
    for resolved, indices, headers_of in to_render.values():
        cached = cache.lookup(resolved, requests=len(indices))
        if cached is None:
            for i, headers in zip(indices, headers_of, strict=True):
                outcomes[i] = NotLoaded(resolved, headers)
            continue
        try:
            bodies = render_many(cached, [requests[i] for i in indices])
        except Exception as exc:
            bodies = [exc] * len(indices)
        for i, headers, body in zip(indices, headers_of, bodies, strict=True):
            outcomes[i] = (
                body
                if isinstance(body, BaseException)
                else Rendered(200, body, "image/png", headers)
            )
    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


def png_batcher(
    cache: GeneratorCache, settings: Settings, name: str
) -> Batcher[PngRequest, PngOutcome]:
    """The batcher of model `name`'s samples.png requests (made on first use)."""

    def make(stats: BatchStats) -> Batcher[PngRequest, PngOutcome]:
        def run(requests: Sequence[PngRequest]) -> list[PngOutcome | BaseException]:
            return render_pngs(cache, settings, name, requests)

        return Batcher(
            run,
            rows=lambda request: request.weight,
            max_rows=settings.sample_batch_rows,
            max_wait_s=settings.sample_batch_wait_ms / 1000,
            max_batches=settings.sample_batches,
            stats=stats,
        )

    return cache.batchers.get(("samples.png", name), make)


async def samples_png(
    cache: GeneratorCache,
    settings: Settings,
    name: str,
    *,
    seed: int = 0,
    n: int = 1,
    nrow: int | None = None,
    label: int | None = None,
    truncation: float | None = None,
    version: str = "latest",
    scale: int = 1,
    if_none_match: str | None = None,
) -> Rendered:
    """GET samples.png: one image (n = 1) or a grid of n, image i from seed + i.

    Coalesced with the model's other concurrent samples.png requests (`png_batcher`), unless
    it alone outweighs a batch: then it takes its own trip to the thread pool.
    """
    check_count(n, settings.max_samples_per_request, "n")
    check_scale(scale, settings)
    seed_range(seed, n)
    cols = None if n == 1 else min(nrow or default_nrow(n), n)
    request = PngRequest(version, seed, n, cols, label, truncation, scale, if_none_match)
    batcher = png_batcher(cache, settings, name)
    outcome: PngOutcome
    if request.weight <= batcher.max_rows:
        outcome = await batcher.submit(request)
    else:  # large: nothing to share, and it must not hold up the small ones behind it
        (alone,) = await anyio.to_thread.run_sync(render_pngs, cache, settings, name, [request])
        if isinstance(alone, BaseException):
            raise alone
        outcome = alone
    if isinstance(outcome, Rendered):
        return outcome
    cached = await cache.load(outcome.resolved)  # the first request for this version
    body = await anyio.to_thread.run_sync(
        render_png, cached, request.seeds, request.labels, truncation, cols, scale
    )
    return Rendered(200, body, "image/png", outcome.headers)


async def interpolation_png(
    cache: GeneratorCache,
    settings: Settings,
    name: str,
    *,
    seed_a: int,
    seed_b: int,
    steps: int = 8,
    label: int | None = None,
    truncation: float | None = None,
    version: str = "latest",
    scale: int = 1,
    if_none_match: str | None = None,
) -> Rendered:
    """GET interpolation.png: `steps` images from seed_a to seed_b in one row."""
    check_steps(steps)
    check_scale(scale, settings)

    def prepare(resolved: ResolvedVersion) -> Prepared:
        check_labels(resolved.spec, [] if label is None else [label], "label")
        _, h, w = resolved.spec.image_shape
        height, width = h + 2 * GRID_PADDING, steps * (w + GRID_PADDING) + GRID_PADDING
        what = f"a strip of {steps} images"
        check_pixels(height * width * scale**2, settings, "scale" if scale > 1 else "steps", what)
        params = {"a": seed_a, "b": seed_b, "steps": steps, "label": label, "scale": scale}
        headers = model_headers(resolved, **{"X-Seed-A": seed_a, "X-Seed-B": seed_b})
        headers["ETag"] = etag_for(
            resolved, "interpolation.png", {**params, "truncation": truncation}
        )
        headers["Cache-Control"] = cache_control(version, settings)

        def render(cached: CachedGenerator) -> bytes:
            return render_interpolation(cached, seed_a, seed_b, steps, label, truncation, scale)

        return headers, render

    return await serve(cache, name, version, prepare, "image/png", if_none_match)


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
    return seed_range(request.seed or 0, request.n)


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


async def bulk_samples(
    cache: GeneratorCache, settings: Settings, name: str, request: BulkSamplesIn
) -> Rendered:
    """POST samples: a zip of PNGs with labels.csv, or an npz, as an attachment."""
    seeds = bulk_seeds(request, settings)
    field = "seeds" if request.seeds is not None else "n"
    media_type = "application/zip" if request.format == "zip" else "application/octet-stream"

    def prepare(resolved: ResolvedVersion) -> Prepared:
        labels = bulk_labels(resolved.spec, request.labels, len(seeds))
        _, h, w = resolved.spec.image_shape
        check_pixels(len(seeds) * h * w, settings, field, f"{len(seeds)} images")
        filename = bulk_filename(resolved.name, resolved.version, seeds, request.format)
        headers = model_headers(resolved, **{"X-Seed": seeds[0], "X-Count": len(seeds)})
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'

        def render(cached: CachedGenerator) -> bytes:
            return render_bulk(cached, seeds, labels, request.truncation, request.format)[0]

        return headers, render

    return await serve(cache, name, request.version, prepare, media_type)
