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

import io
import zipfile
from collections.abc import Callable

import torch

from ganserve.gan.errors import ConfigError
from ganserve.gan.sample import encode_png
from ganserve.gan.translation.translate import LoadedTranslator, decode_picture, translate_picture
from ganserve.service.errors import InvalidInputError, PayloadTooLargeError
from ganserve.settings import Settings

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
