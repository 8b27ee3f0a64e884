"""Translating uploaded images with a CycleGAN model (DESIGN §8): the logic behind
`POST /v1/models/{name}/translate`, free of HTTP so it can be tested alone.

The body is the raw image (`image/png`, `image/jpeg`) or a zip of them (`application/zip`).
Bounds, each a 4xx naming the field:
- the body: GANSERVE_MAX_BODY_BYTES, enforced while it streams (service.guard);
- each picture: GANSERVE_MAX_UPLOAD_IMAGE_PIXELS, checked from its header before decoding;
- keep_size: the translated picture's pixels, GANSERVE_MAX_TRANSLATE_PIXELS (the generators'
  activations grow with them);
- a zip: at most GANSERVE_MAX_BULK_SAMPLES entries, GANSERVE_MAX_UPLOAD_UNCOMPRESSED_BYTES in
  all and GANSERVE_MAX_UPLOAD_COMPRESSION_RATIO per entry, read from memory (nothing is
  written to disk, so a refused request leaves nothing behind).
Pixels: gan.translation.translate.translate_picture, so the bytes equal `ganserve translate`'s
for the same input and version. Zips out carry fixed timestamps: same request, same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ganserve.gan.errors import CheckpointError, ConfigError
from ganserve.gan.sample import encode_png, make_grid, upscale
from ganserve.gan.translation.pairs import DomainPair, load_pair
from ganserve.gan.translation.train import preview_inputs
from ganserve.gan.translation.translate import (
    TRANSLATOR_FORMAT,
    LoadedTranslator,
    decode_picture,
    load_translator,
    translate_picture,
    translation_grid,
)
from ganserve.service.errors import InvalidInputError, PayloadTooLargeError
from ganserve.service.registry import versions as registry
from ganserve.settings import Settings
from ganserve.store import Store
from ganserve.store import registry as store_registry

IMAGE_TYPES = ("image/png", "image/jpeg")
ZIP_TYPE = "application/zip"
CONTENT_TYPES = (*IMAGE_TYPES, ZIP_TYPE)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: equal requests, equal bytes
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def media_type(content_type: str | None) -> str:
    """The body's media type (parameters dropped), or a 415-like 422 naming the header."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in CONTENT_TYPES:
        raise InvalidInputError(
            f"content-type: must be one of {', '.join(CONTENT_TYPES)}, got {kind or 'none'!r}",
            field="content-type",
        )
    return kind


def _picture_png(
    translator: LoadedTranslator, data: bytes, direction: str, keep_size: bool, settings: Settings
) -> bytes:
    try:
        picture = decode_picture(data, settings.max_upload_image_pixels)
    except ConfigError as exc:
        if "over the limit" in exc.message:
            raise PayloadTooLargeError(
                str(exc), field="image", limit=settings.max_upload_image_pixels
            ) from None
        raise
    width, height = picture.size
    if keep_size and width * height > settings.max_translate_pixels:
        raise PayloadTooLargeError(
            f"image: keep_size would translate {width}x{height} = {width * height} pixels, "
            f"over the limit of {settings.max_translate_pixels}; send a smaller picture or "
            "omit keep_size",
            field="image",
            limit=settings.max_translate_pixels,
        )
    translated = translate_picture(translator, picture, direction, keep_size)  # (H, W, C)
    return encode_png(translated)


def translate_image(
    translator: LoadedTranslator, body: bytes, direction: str, keep_size: bool, settings: Settings
) -> bytes:
    """One PNG or JPEG in, its translation out as PNG bytes."""
    with torch.inference_mode():
        return _picture_png(translator, body, direction, keep_size, settings)


def _entries(archive: zipfile.ZipFile, settings: Settings) -> list[zipfile.ZipInfo]:
    infos = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and info.filename.lower().endswith(_IMAGE_SUFFIXES)
        and not any(part.startswith(".") or part == "__MACOSX" for part in info.filename.split("/"))
    ]
    if not infos:
        raise InvalidInputError("body: the zip holds no .png or .jpg images", field="body")
    if len(infos) > settings.max_bulk_samples:
        raise PayloadTooLargeError(
            f"body: {len(infos)} images, over the limit of {settings.max_bulk_samples}",
            field="body", limit=settings.max_bulk_samples,
        )  # fmt: skip
    total = sum(info.file_size for info in infos)
    if total > settings.max_upload_uncompressed_bytes:
        raise PayloadTooLargeError(
            f"body: the images unpack to {total} bytes, over the limit of "
            f"{settings.max_upload_uncompressed_bytes}",
            field="body", limit=settings.max_upload_uncompressed_bytes,
        )  # fmt: skip
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > settings.max_upload_compression_ratio:
            raise PayloadTooLargeError(
                f"body: {info.filename[:100]!r} compresses {ratio:.0f}:1, over the limit of "
                f"{settings.max_upload_compression_ratio:g}:1",
                field="body", limit=settings.max_upload_compression_ratio,
            )  # fmt: skip
    return infos


def translate_zip(
    translator: LoadedTranslator,
    body: bytes,
    direction: str,
    keep_size: bool,
    settings: Settings,
    on_image: Callable[[], None] | None = None,
) -> bytes:
    """A zip of PNG/JPEG images in, a zip of their PNG translations out (same names, .png).

    An entry that is not a readable image fails the whole request, naming the entry.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InvalidInputError(f"body: not a readable zip file ({exc})", field="body") from None
    out = io.BytesIO()
    with archive, zipfile.ZipFile(out, "w") as result, torch.inference_mode():
        used: set[str] = set()
        for info in _entries(archive, settings):
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
                raise InvalidInputError(
                    f"body: cannot read {info.filename[:100]!r} ({exc})", field="body"
                ) from None
            try:
                png = _picture_png(translator, data, direction, keep_size, settings)
            except ConfigError as exc:
                raise InvalidInputError(
                    f"body: {info.filename[:100]!r}: {exc.message}", field="body"
                ) from None
            name = info.filename.rsplit(".", 1)[0] + ".png"
            if name in used:  # a.jpg and a.png in one zip
                name = info.filename + ".png"
            used.add(name)
            entry = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            entry.create_system, entry.external_attr = 3, 0o644 << 16
            result.writestr(entry, png, compress_type=zipfile.ZIP_STORED)
            if on_image:
                on_image()
    return out.getvalue()


# ----------------------------------------------------------------------------- models


def is_translation_model(description: dict[str, Any]) -> bool:
    """Whether a registered version's description is an exported translator (CycleGAN)."""
    return description.get("format") == TRANSLATOR_FORMAT


@dataclass(frozen=True)
class ServedTranslator:
    name: str
    version: int
    translator: LoadedTranslator
    identity: str  # sha256 of the exported weights: part of every ETag


class TranslatorCache:
    """Loaded translators of one API process, LRU by (name, version); thread-safe.

    The registry is read on every call (an alias that moved is followed at once); files are
    loaded on a miss and their sha256 checked against the registered description.
    """

    def __init__(self, store: Store, capacity: int) -> None:
        self.store, self.capacity = store, capacity
        self._entries: OrderedDict[tuple[str, int], ServedTranslator] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, name: str, ref: str) -> ServedTranslator:
        """Blocking (call it from a thread): 404 naming what exists, 422 for a noise model."""
        with self.store.session() as session:
            row = registry.resolve_version(session, name, ref)
            version, path = row.version, row.artifact_path
            description = dict(row.description or {})
        if not is_translation_model(description):
            raise InvalidInputError(
                f"model {name!r} v{version} generates from noise; it does not translate "
                "images (use samples.png)",
                field="name",
            )
        identity = str(description.get("sha256", ""))
        with self._guard:
            entry = self._entries.get((name, version))
            if entry is not None and entry.identity == identity:
                self._entries.move_to_end((name, version))
                return entry
        translator = load_translator(self.store.artifacts.absolute(path), "cpu")
        if translator.description.get("sha256") != identity:
            raise CheckpointError(
                f"the files of model {name!r} v{version} are not the ones registered"
            )
        entry = ServedTranslator(name, version, translator, identity)
        with self._guard:
            self._entries[(name, version)] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return entry

    def invalidate(self, name: str, version: int) -> None:
        with self._guard:
            self._entries.pop((name, version), None)


@dataclass(frozen=True)
class TranslateAnswer:
    status: int  # 200, or 304 when If-None-Match matched (body empty)
    body: bytes
    media_type: str | None
    headers: dict[str, str]


def _etag(served: ServedTranslator, direction: str, keep_size: bool, kind: str, body: bytes) -> str:
    payload = {
        "kind": f"translate-{kind}", "model": served.name, "version": served.version,
        "identity": served.identity, "direction": direction, "keep_size": keep_size,
        "input": hashlib.sha256(body).hexdigest(),
    }  # fmt: skip
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:40] + '"'


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def answer_translate(
    cache: TranslatorCache,
    settings: Settings,
    name: str,
    *,
    version: str,
    direction: str,
    keep_size: bool,
    content_type: str | None,
    body: bytes,
    if_none_match: str | None,
) -> TranslateAnswer:
    """The whole route, blocking (run it in a thread): resolve, 304 or translate."""
    kind = media_type(content_type)
    if direction not in ("a2b", "b2a"):
        raise InvalidInputError(
            f"direction: must be a2b or b2a, got {direction[:20]!r}", field="direction"
        )
    served = cache.get(name, version)
    etag = _etag(served, direction, keep_size, "zip" if kind == ZIP_TYPE else "image", body)
    private = bool(settings.api_keys) and settings.protect_sampling
    immutable = store_registry.is_pinned(version)
    cache_control = ("private, " if private else "public, ") + "max-age=31536000, immutable"
    headers = {
        "X-Model-Name": served.name,
        "X-Model-Version": str(served.version),
        "X-Direction": direction,
        "ETag": etag,
        "Cache-Control": cache_control
        if immutable
        else ("private, no-cache" if private else "no-cache"),
    }
    if _etag_matches(if_none_match, etag):
        return TranslateAnswer(304, b"", None, headers)
    if kind == ZIP_TYPE:
        out = translate_zip(served.translator, body, direction, keep_size, settings)
        headers["Content-Disposition"] = (
            f'attachment; filename="{served.name}-v{served.version}-{direction}.zip"'
        )
        return TranslateAnswer(200, out, ZIP_TYPE, headers)
    png = translate_image(served.translator, body, direction, keep_size, settings)
    return TranslateAnswer(200, png, "image/png", headers)


def translators_of(context: Any) -> TranslatorCache:
    """The app context's translator cache, made on first use (an AppContext attribute)."""
    cache: TranslatorCache | None = getattr(context, "translators", None)
    if cache is None:
        cache = TranslatorCache(context.store, context.settings.generator_cache_size)
        context.translators = cache
    return cache


@functools.lru_cache(maxsize=4)
def _pair(dataset: str, dataset_b: str, data_dir: str) -> DomainPair:
    return load_pair(dataset, dataset_b, data_dir)


MAX_GRID_INPUTS = 64  # real inputs per domain in a samples.png grid


def translation_grid_png(
    cache: TranslatorCache,
    settings: Settings,
    name: str,
    *,
    version: str,
    seed: int,
    n: int,
    scale: int,
    if_none_match: str | None,
) -> TranslateAnswer:
    """samples.png of a CycleGAN model: n real inputs of each domain chosen by `seed`, in
    rows: A, G(A), F(G(A)), B, F(B), G(F(B)). Deterministic for (version, seed, n, scale)."""
    if n > MAX_GRID_INPUTS:
        raise PayloadTooLargeError(
            f"n: a translation grid shows at most {MAX_GRID_INPUTS} inputs per domain",
            field="n", limit=MAX_GRID_INPUTS,
        )  # fmt: skip
    served = cache.get(name, version)
    train_config = served.translator.description.get("train_config") or {}
    dataset = str(served.translator.description.get("dataset") or train_config.get("dataset"))
    dataset_b = served.translator.description.get("dataset_b")
    etag = _etag(served, "grid", False, f"{seed}-{n}-{scale}", b"")
    headers = {"X-Model-Name": served.name, "X-Model-Version": str(served.version),
               "X-Seed": str(seed), "ETag": etag,
               "Cache-Control": "public, max-age=31536000, immutable"
               if store_registry.is_pinned(version) else "no-cache"}  # fmt: skip
    if _etag_matches(if_none_match, etag):
        return TranslateAnswer(304, b"", None, headers)
    pair = _pair(dataset, str(dataset_b) if dataset_b else "", str(settings.data_dir))
    real_a, real_b = preview_inputs(pair, seed, n)
    rows = translation_grid(served.translator.a2b, served.translator.b2a, real_a, real_b)
    grid = make_grid(rows, nrow=n)
    pixels = grid.shape[0] * grid.shape[1] * scale * scale
    if pixels > settings.max_output_pixels:
        raise PayloadTooLargeError(
            f"scale: the grid would have {pixels} pixels, over the limit of "
            f"{settings.max_output_pixels}", field="scale", limit=settings.max_output_pixels,
        )  # fmt: skip
    return TranslateAnswer(200, encode_png(upscale(grid, scale)), "image/png", headers)
