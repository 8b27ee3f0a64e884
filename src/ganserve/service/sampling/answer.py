"""Answering sampling requests: one path for every kind (DESIGN §8).

resolve the version -> answer 304 if the ETag matches -> render, in a worker thread (never on
the event loop). `respond` walks that path for a list of requests of one kind and model: the
registry is read once per version reference, each request is checked (`limits`) and answered
304 (`caching`) on its own, and each version's remaining requests are rendered together by
the kind's `render` from the loaded generator (loaded there on a miss). A request that fails
fails alone.

samples.png requests of one model are coalesced (`batching.Batcher`, on the app context):
concurrent ones share one `respond`, hence one trip to the thread pool and one forward over
all their rows; a request heavier than a batch, an interpolation strip and a bulk download
take a `respond` of their own. Pixels come from `gan.sample` (fixed-shape passes), so every
PNG is byte-identical however it was batched, and equal to `ganserve sample`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio.to_thread
import torch

from ganserve.gan.models import Generator
from ganserve.gan.sample import (
    consecutive_seeds,
    default_nrow,
    generate,
    interpolation_png,
    make_noise,
    picture_png,
)
from ganserve.service.operations.telemetry import IMAGES_GENERATED
from ganserve.service.registry.schemas import BulkSamplesIn
from ganserve.service.sampling import limits
from ganserve.service.sampling.batching import Batcher, Batchers, BatchStats
from ganserve.service.sampling.bulk import MEDIA_TYPES, bulk_file, bulk_filename
from ganserve.service.sampling.caching import (
    Rendered,
    etag_matches,
    image_headers,
    model_headers,
    not_modified,
)
from ganserve.service.sampling.generator_cache import GeneratorCache, Key, ResolvedVersion
from ganserve.settings import Settings

__all__ = ["Rendered", "bulk_samples", "interpolation", "respond", "samples_png"]


class SampleRequest(Protocol):
    """What `respond` needs of a request, whatever its kind."""

    @property
    def ref(self) -> str: ...  # the version reference: a number or an alias

    @property
    def if_none_match(self) -> str | None: ...

    @property
    def media_type(self) -> str: ...

    def headers(self, resolved: ResolvedVersion, settings: Settings) -> dict[str, str]:
        """Check what needs the model; the response headers (with an ETag if cacheable)."""
        ...


Req = TypeVar("Req", bound=SampleRequest)
Render = Callable[[Generator, Sequence[Req]], list[bytes | BaseException]]


def respond(
    cache: GeneratorCache,
    settings: Settings,
    name: str,
    requests: Sequence[Req],
    render: Render[Req],
) -> list[Rendered | BaseException]:
    """Resolve, 304 or render each request for model `name` (blocking: call it in a thread)."""
    outcomes: list[Rendered | BaseException | None] = [None] * len(requests)
    resolutions: dict[str, ResolvedVersion | Exception] = {}
    groups: dict[Key, tuple[ResolvedVersion, list[tuple[int, dict[str, str]]]]] = {}
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
            headers = request.headers(resolved, settings)
        except Exception as exc:
            outcomes[i] = exc
            continue
        if etag_matches(request.if_none_match, headers.get("ETag")):
            outcomes[i] = not_modified(headers)
            continue
        groups.setdefault(resolved.key, (resolved, []))[1].append((i, headers))
    for resolved, members in groups.values():
        batch = [requests[i] for i, _ in members]
        bodies: list[bytes | BaseException]
        try:
            generator = cache.loaded(resolved, requests=len(members)).generator
            bodies = render(generator, batch)
        except Exception as exc:
            bodies = [exc] * len(members)
        for (i, headers), request, body in zip(members, batch, bodies, strict=True):
            outcomes[i] = (
                body
                if isinstance(body, BaseException)
                else Rendered(200, body, request.media_type, headers)
            )
    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


async def respond_alone(
    cache: GeneratorCache, settings: Settings, name: str, request: Req, render: Render[Req]
) -> Rendered:
    """`respond` for one request, in its own trip to the thread pool."""
    (outcome,) = await anyio.to_thread.run_sync(respond, cache, settings, name, [request], render)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _counted(images: torch.Tensor) -> torch.Tensor:
    IMAGES_GENERATED.inc(len(images))
    return images


# ----------------------------------------------------------------------------- samples.png


@dataclass(frozen=True)
class PngRequest:
    """One samples.png request, checked as far as it can be without the model."""

    ref: str
    seed: int
    n: int
    cols: int | None  # images per grid row; None for one image
    label: int | None
    truncation: float | None
    scale: int
    if_none_match: str | None = None
    media_type: str = "image/png"
    seeds: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", consecutive_seeds(self.seed, self.n))

    @property
    def labels(self) -> list[int] | None:
        return None if self.label is None else [self.label] * self.n

    @property
    def weight(self) -> int:
        """Its share of a batch: images, times the pixels upscaling adds (encoding cost)."""
        return self.n * self.scale**2

    def headers(self, resolved: ResolvedVersion, settings: Settings) -> dict[str, str]:
        label, n = self.label, self.n
        limits.check_labels(resolved.spec, [] if label is None else [label], "label")
        what = "the image" if n == 1 else f"a grid of {n} images"
        limits.check_picture(resolved.spec, n, self.cols or 1, self.scale, settings, "n", what)
        limits.check_work(resolved.spec, n, self.truncation, settings, "n")
        params: dict[str, object] = {
            "seed": self.seed,
            "n": n,
            "nrow": self.cols,
            "label": label,
            "truncation": self.truncation,
            "scale": self.scale,
        }
        extra = {"X-Seed": self.seed}
        return image_headers(resolved, self.ref, settings, "samples.png", params, **extra)


def render_pngs(
    generator: Generator, requests: Sequence[PngRequest]
) -> list[bytes | BaseException]:
    """The PNG of each request (as `gan.sample.sample_png` makes it alone), from one forward
    of all their rows. A request whose noise cannot be drawn fails alone."""
    spec = generator.spec
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
    images = _counted(generate(generator, torch.cat(noise), y_all)).numpy()
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


def png_batcher(
    cache: GeneratorCache, batchers: Batchers, settings: Settings, name: str
) -> Batcher[PngRequest, Rendered]:
    """The batcher of model `name`'s samples.png requests (made on first use)."""

    def make(stats: BatchStats) -> Batcher[PngRequest, Rendered]:
        def run(requests: Sequence[PngRequest]) -> list[Rendered | BaseException]:
            return respond(cache, settings, name, requests, render_pngs)

        return Batcher(
            run,
            rows=lambda request: request.weight,
            max_rows=settings.sample_batch_rows,
            max_wait_s=settings.sample_batch_wait_ms / 1000,
            max_batches=settings.sample_batches,
            stats=stats,
        )

    return batchers.get(("samples.png", name), make)


async def samples_png(
    cache: GeneratorCache,
    batchers: Batchers,
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
    """GET samples.png: one image (n = 1) or a grid of n, image i from seed + i (wrapping).

    Coalesced with the model's other concurrent samples.png requests (`png_batcher`), unless
    it alone outweighs a batch: then it takes its own trip to the thread pool.
    """
    limits.check_count(n, settings.max_samples_per_request, "n")
    limits.check_scale(scale, settings)
    cols = None if n == 1 else min(nrow or default_nrow(n), n)
    request = PngRequest(version, seed, n, cols, label, truncation, scale, if_none_match)
    batcher = png_batcher(cache, batchers, settings, name)
    if request.weight <= batcher.max_rows:
        return await batcher.submit(request)
    # large: nothing to share, and it must not hold up the small ones behind it
    return await respond_alone(cache, settings, name, request, render_pngs)


# ----------------------------------------------------------------------------- interpolation


@dataclass(frozen=True)
class InterpolationRequest:
    """One interpolation.png request: `steps` images from seed_a's to seed_b's, one row."""

    ref: str
    seed_a: int
    seed_b: int
    steps: int
    label: int | None
    truncation: float | None
    scale: int
    if_none_match: str | None = None
    media_type: str = "image/png"

    def headers(self, resolved: ResolvedVersion, settings: Settings) -> dict[str, str]:
        limits.check_labels(resolved.spec, [] if self.label is None else [self.label], "label")
        what = f"a strip of {self.steps} images"
        spec, steps = resolved.spec, self.steps
        limits.check_picture(spec, steps, steps, self.scale, settings, "steps", what)
        limits.check_work(spec, 2, self.truncation, settings, "steps")  # two ends drawn
        params: dict[str, object] = {
            "a": self.seed_a,
            "b": self.seed_b,
            "steps": steps,
            "label": self.label,
            "scale": self.scale,
            "truncation": self.truncation,
        }
        extra = {"X-Seed-A": self.seed_a, "X-Seed-B": self.seed_b}
        return image_headers(resolved, self.ref, settings, "interpolation.png", params, **extra)

    def render(self, generator: Generator) -> bytes:
        png = interpolation_png(
            generator,
            self.seed_a,
            self.seed_b,
            self.steps,
            label=self.label,
            truncation=self.truncation,
            scale=self.scale,
        )
        IMAGES_GENERATED.inc(self.steps)
        return png


async def interpolation(
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
    limits.check_steps(steps)
    limits.check_scale(scale, settings)
    request = InterpolationRequest(
        version, seed_a, seed_b, steps, label, truncation, scale, if_none_match
    )
    return await respond_alone(cache, settings, name, request, _render_each)


# ----------------------------------------------------------------------------- bulk


@dataclass(frozen=True)
class BulkRequest:
    """One bulk download: the seeds checked, the rest needing the model."""

    body: BulkSamplesIn
    seeds: list[int]
    if_none_match: None = None  # an attachment: not revalidated

    @property
    def ref(self) -> str:
        return self.body.version

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.body.format]

    def headers(self, resolved: ResolvedVersion, settings: Settings) -> dict[str, str]:
        limits.bulk_labels(resolved.spec, self.body.labels, len(self.seeds))
        _, h, w = resolved.spec.image_shape
        count = len(self.seeds)
        field = "seeds" if self.body.seeds is not None else "n"
        limits.check_pixels(count * h * w, settings, field, f"{count} images")
        limits.check_work(resolved.spec, count, self.body.truncation, settings, field)
        filename = bulk_filename(resolved.name, resolved.version, self.seeds, self.body.format)
        headers = model_headers(resolved, **{"X-Seed": self.seeds[0], "X-Count": count})
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return headers

    def render(self, generator: Generator) -> bytes:
        labels = limits.bulk_labels(generator.spec, self.body.labels, len(self.seeds))
        data = bulk_file(generator, self.seeds, labels, self.body.truncation, self.body.format)
        IMAGES_GENERATED.inc(len(self.seeds))
        return data


async def bulk_samples(
    cache: GeneratorCache, settings: Settings, name: str, body: BulkSamplesIn
) -> Rendered:
    """POST samples: a zip of PNGs with labels.csv, or an npz, as an attachment."""
    request = BulkRequest(body, limits.bulk_seeds(body, settings))
    return await respond_alone(cache, settings, name, request, _render_each)


class _RendersAlone(SampleRequest, Protocol):
    def render(self, generator: Generator) -> bytes: ...


def _render_each(
    generator: Generator, requests: Sequence[_RendersAlone]
) -> list[bytes | BaseException]:
    outcomes: list[bytes | BaseException] = []
    for request in requests:
        try:
            outcomes.append(request.render(generator))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes
