"""Dataset uploads (DESIGN §4 Datasets, §10): a zip of PNG/JPEG images becomes a packed dataset.

`ingest_upload` takes the request body as a stream of chunks and:

1. spools it into a private folder under data_dir/tmp, counting bytes as they arrive (413 as
   soon as max_upload_bytes is passed; nothing is held in memory), from a raw body or the
   `file` field of a multipart/form-data body (`receive_body`);
2. checks the zip's central directory before extracting anything: entry count, declared sizes,
   compression ratios, names, links and devices, encryption (`validate_zip`);
3. extracts only the image members, capping the bytes actually written, and reads each image's
   header against the pixel limit before any pixel is decoded (`extract_images`);
4. decodes and resizes the images with gan.data.load_image_folder, writes the packed `.npz`
   and publishes it under data_dir/datasets with one atomic, non-replacing link (`publish`).

Every refusal is a ServiceError, so the client gets a 4xx problem details saying why; the
private folder is removed whatever happens, so a rejected or interrupted upload leaves nothing
behind, and nothing is ever written outside the data dir.
"""

from __future__ import annotations

import contextlib
import logging
import lzma
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from PIL import Image, UnidentifiedImageError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ganserve.gan.data import (
    BUILTIN_DATASETS,
    IMAGE_FORMATS,
    UPLOAD_NAME_PATTERN,
    ImageDataset,
    load_image_folder,
    packed_dataset_path,
    save_packed,
    validate_upload_name,
)
from ganserve.gan.errors import DatasetError
from ganserve.service.errors import (
    BadRequestError,
    ConflictError,
    InvalidInputError,
    PayloadTooLargeError,
)
from ganserve.settings import Settings

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger(__name__)

# Sizes the route offers for `image_size`: dcgan builds 8, 14, 16, 28, 32, 56 and 64 px.
MIN_UPLOAD_IMAGE_SIZE = 8
MAX_UPLOAD_IMAGE_SIZE = 64
# Below this declared size a member's compression ratio is not judged: tiny members (a
# .DS_Store, an uncompressed thumbnail) compress well yet cannot hurt, and the total
# uncompressed limit already bounds what many of them add up to.
RATIO_CHECK_MIN_BYTES = 64 * 1024
COPY_CHUNK_BYTES = 1024 * 1024
TMP_FOLDER = "tmp"  # under the data dir; uploads never write anywhere else
WORK_PREFIX = "upload-"
# A work folder this old belongs to a process that died mid-upload (an upload is bounded by
# max_upload_bytes, so a live one never takes this long); the next upload removes it.
STALE_WORK_S = 24 * 3600
# What zipfile can decompress; anything else is refused before extraction with a clear reason.
_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_ENCRYPTED_FLAG = 0x1
_MAX_COMPONENT_BYTES = 255  # the longest file name Linux (and most filesystems) accept
# What reading a hostile member can raise (bz2 reports bad data as OSError).
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


@dataclass(frozen=True)
class UploadLimits:
    """The upload limits of the settings (GANSERVE_MAX_UPLOAD_*), in one place."""

    max_bytes: int
    max_entries: int
    max_uncompressed_bytes: int
    max_compression_ratio: float
    max_image_pixels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(
            max_bytes=settings.max_upload_bytes,
            max_entries=settings.max_upload_entries,
            max_uncompressed_bytes=settings.max_upload_uncompressed_bytes,
            max_compression_ratio=settings.max_upload_compression_ratio,
            max_image_pixels=settings.max_upload_image_pixels,
        )


# --- refusals -----------------------------------------------------------------------------


def _invalid(detail: str, **extra: object) -> InvalidInputError:
    return InvalidInputError(detail, field="body", **extra)


def _too_large(detail: str, limit: str, value: float) -> PayloadTooLargeError:
    return PayloadTooLargeError(detail, field="body", limit=limit, max=value)


def _refuse_entry(raw_name: str, why: str) -> InvalidInputError:
    return _invalid(f"archive entry {raw_name!r} {why}", entry=raw_name)


# --- the name -----------------------------------------------------------------------------


def check_upload_name(name: str, data_dir: Path) -> str:
    """`name` if a new upload may take it; 422 for a malformed name, 409 for a taken one."""
    if name in BUILTIN_DATASETS:
        raise ConflictError(
            f"dataset name {name!r} is taken by a built-in dataset "
            f"({', '.join(BUILTIN_DATASETS)}); choose another name",
            field="name",
        )
    try:
        validate_upload_name(name)
    except DatasetError as error:
        raise InvalidInputError(
            str(error), field="name", pattern=UPLOAD_NAME_PATTERN.pattern
        ) from None
    if packed_dataset_path(data_dir, name).exists():
        raise ConflictError(
            f"dataset {name!r} already exists; choose another name or delete it first "
            f"(DELETE /v1/datasets/{name})",
            field="name",
        )
    return name


# --- receiving the body -------------------------------------------------------------------


def check_content_length(content_length: str | None, limits: UploadLimits) -> None:
    """413 before reading anything when the declared body is over the limit."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        return  # the server rejects malformed framing; the streamed count still applies
    if declared > limits.max_bytes:
        raise _too_large(
            f"the body declares {declared} bytes (Content-Length), over the upload limit of "
            f"{limits.max_bytes} bytes (GANSERVE_MAX_UPLOAD_BYTES)",
            "max_upload_bytes",
            limits.max_bytes,
        )


class _RawSink:
    """The whole body is the zip."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def write(self, chunk: bytes) -> None:
        self._out.write(chunk)

    def finish(self) -> None:
        pass


class _MultipartSink:
    """A multipart/form-data body, parsed as it streams: the first `file` part is the zip."""

    def __init__(self, boundary: bytes, out: IO[bytes]) -> None:
        self._out = out
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""
        self._writing = False
        self._found = False
        self._ended = False
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _part_begin(self) -> None:
        self._disposition = b""

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_field.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        # Only the first `file` part is the archive; other fields are ignored.
        self._writing = options.get(b"name") == b"file" and not self._found
        self._found = self._found or self._writing

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._writing:
            self._out.write(data[start:end])

    def _part_end(self) -> None:
        self._writing = False

    def _end(self) -> None:
        self._ended = True

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as error:
            raise _invalid(f"the multipart/form-data body is malformed: {error}") from None

    def finish(self) -> None:
        self._parser.finalize()
        if not self._found:
            raise _invalid(
                "the multipart/form-data body has no 'file' field; send the zip as the 'file' "
                "field, or as the raw body with Content-Type: application/zip"
            )
        if not self._ended:
            raise _invalid("the multipart/form-data body ends before its closing boundary")


def _sink_for(content_type: str | None, out: IO[bytes]) -> _RawSink | _MultipartSink:
    media_type, options = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data":
        # Whatever else it says (curl --data-binary sends x-www-form-urlencoded), the body is
        # taken as the zip itself; the zip check tells the client when it is not one.
        return _RawSink(out)
    boundary = options.get(b"boundary")
    if not boundary:
        raise _invalid("the multipart/form-data Content-Type has no boundary")
    return _MultipartSink(boundary, out)


async def receive_body(
    body: AsyncIterable[bytes], dest: Path, *, content_type: str | None, limits: UploadLimits
) -> int:
    """Write the zip in `body` to `dest` chunk by chunk; the body's size in bytes.

    413 as soon as more than max_upload_bytes have arrived (multipart framing counts too),
    400 when the client goes away first. The writes are small and sequential, so they run on
    the event loop rather than paying a thread hop per chunk.
    """
    received = 0
    with dest.open("xb") as out:
        sink = _sink_for(content_type, out)
        try:
            async for chunk in body:
                received += len(chunk)
                if received > limits.max_bytes:
                    raise _too_large(
                        f"the body is over the upload limit of {limits.max_bytes} bytes "
                        "(GANSERVE_MAX_UPLOAD_BYTES); nothing was kept",
                        "max_upload_bytes",
                        limits.max_bytes,
                    )
                sink.write(chunk)
        except ClientDisconnect:
            raise BadRequestError(
                "the client disconnected before the body was complete; nothing was kept",
                field="body",
            ) from None
        sink.finish()
    return received


# --- the zip, before extraction -----------------------------------------------------------


def entry_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The path components of an entry's name; 422 unless it is a plain relative path."""
    raw = info.orig_filename  # zipfile's `filename` has already cut it at a NUL
    if "\x00" in raw:
        raise _refuse_entry(raw, "contains a NUL character")
    if "\\" in raw:
        raise _refuse_entry(raw, "contains a backslash; use '/' between folders")
    if raw.startswith("/"):
        raise _refuse_entry(raw, "is an absolute path; entries must be relative paths")
    if _DRIVE_LETTER.match(raw):
        raise _refuse_entry(raw, "starts with a drive letter; entries must be relative paths")
    parts = tuple(part for part in raw.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _refuse_entry(raw, "contains '..'; entries must stay inside the archive")
    if not parts:
        raise _refuse_entry(raw, "has an empty name")
    if any(len(part.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT_BYTES for part in parts):
        raise _refuse_entry(raw, f"has a name longer than {_MAX_COMPONENT_BYTES} bytes")
    return parts


def _check_entry_kind(info: zipfile.ZipInfo) -> None:
    raw = info.orig_filename
    mode = info.external_attr >> 16  # Unix mode bits, when the archiver recorded them
    if stat.S_ISLNK(mode):
        raise _refuse_entry(raw, "is a symbolic link; links are not accepted")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _refuse_entry(raw, "is a device, FIFO or socket; only files and folders are accepted")
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise _refuse_entry(raw, "is encrypted; upload an archive without a password")
    if info.compress_type not in _METHODS:
        raise _refuse_entry(
            raw,
            f"uses compression method {info.compress_type}; accepted: "
            f"{', '.join(_METHODS.values())}",
        )


def _check_entry_size(info: zipfile.ZipInfo, limits: UploadLimits) -> None:
    if info.is_dir() or info.file_size <= RATIO_CHECK_MIN_BYTES:
        return
    ratio = info.file_size / info.compress_size if info.compress_size else float("inf")
    if ratio > limits.max_compression_ratio:
        raise _too_large(
            f"archive entry {info.orig_filename!r} expands {ratio:.0f}-fold "
            f"({info.compress_size} -> {info.file_size} bytes), over the limit of "
            f"{limits.max_compression_ratio:g} (GANSERVE_MAX_UPLOAD_COMPRESSION_RATIO); "
            "this looks like a zip bomb",
            "max_upload_compression_ratio",
            limits.max_compression_ratio,
        )


def validate_zip(path: Path, limits: UploadLimits) -> list[zipfile.ZipInfo]:
    """Every entry of the zip at `path`, after checks that read only its central directory.

    422: not a zip; a name that is absolute, has '..', a backslash, a drive letter or a NUL;
    a link, device or FIFO; an encrypted entry; an unsupported compression method; a name
    used twice, or both as a file and a folder. 413: more than max_upload_entries entries,
    more than max_upload_uncompressed_bytes declared in all, or a member expanding more than
    max_upload_compression_ratio times.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise _invalid(
            f"the body is not a zip archive ({error}); upload a .zip of PNG or JPEG images"
        ) from None
    if len(infos) > limits.max_entries:
        raise _too_large(
            f"the archive has {len(infos)} entries, over the limit of {limits.max_entries} "
            "(GANSERVE_MAX_UPLOAD_ENTRIES)",
            "max_upload_entries",
            limits.max_entries,
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_uncompressed_bytes:
        raise _too_large(
            f"the archive expands to {declared} bytes, over the limit of "
            f"{limits.max_uncompressed_bytes} (GANSERVE_MAX_UPLOAD_UNCOMPRESSED_BYTES)",
            "max_upload_uncompressed_bytes",
            limits.max_uncompressed_bytes,
        )
    files: dict[tuple[str, ...], str] = {}
    folders: set[tuple[str, ...]] = set()
    for info in infos:
        parts = entry_parts(info)
        _check_entry_kind(info)
        _check_entry_size(info, limits)
        if info.is_dir():
            folders.add(parts)
            continue
        if parts in files:
            raise _refuse_entry(info.orig_filename, "appears twice in the archive")
        files[parts] = info.orig_filename
        folders.update(parts[:i] for i in range(1, len(parts)))
    clash = next((files[parts] for parts in files if parts in folders), None)
    if clash is not None:
        raise _refuse_entry(clash, "is both a file and a folder in the archive")
    return infos


# --- extraction ---------------------------------------------------------------------------


def _skipped(parts: tuple[str, ...]) -> bool:
    # macOS metadata and hidden files are not images; they are left in the archive.
    return any(part == "__MACOSX" or part.startswith(".") for part in parts)


def plan_layout(infos: list[zipfile.ZipInfo]) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """(entry, path inside the image folder) for each file to extract.

    Accepted layouts: images at the top (one class, "all"), or one folder per class; either
    may sit inside a single wrapper folder, which is dropped. A single folder holding only
    images is taken as one class named after it.
    """
    members = [
        (info, parts)
        for info in infos
        if not info.is_dir() and not _skipped(parts := entry_parts(info))
    ]
    if not members:
        raise _invalid(
            "the archive holds no images (hidden files and __MACOSX are skipped); "
            "put PNG or JPEG images in it"
        )
    tops = {parts[0] for _, parts in members}
    if (
        len(tops) == 1
        and all(len(parts) >= 2 for _, parts in members)
        and any(len(parts) >= 3 for _, parts in members)
    ):
        members = [(info, parts[1:]) for info, parts in members]
    deep = next((info for info, parts in members if len(parts) > 2), None)
    if deep is not None:
        raise _refuse_entry(
            deep.orig_filename,
            "is nested too deep; use one folder per class holding the images, at the top of "
            "the archive or inside one wrapper folder",
        )
    loose = next((info for info, parts in members if len(parts) == 1), None)
    in_folder = next((info for info, parts in members if len(parts) == 2), None)
    if loose is not None and in_folder is not None:
        raise _invalid(
            f"the archive mixes loose files (such as {loose.orig_filename!r}) with class "
            f"folders (such as {in_folder.orig_filename!r}); put every image in a class folder"
        )
    return members


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Decompress `info` into `target`; the bytes written, refused past its declared size or
    past `budget` (what is left of the total limit) — declared sizes are not trusted."""
    raw = info.orig_filename
    written = 0
    with target.open("xb") as sink:
        try:
            source = archive.open(info)
        except _READ_ERRORS as error:
            raise _refuse_entry(raw, f"cannot be read ({error})") from None
        with source:
            while True:
                try:
                    chunk = source.read(COPY_CHUNK_BYTES)
                except _READ_ERRORS as error:
                    raise _refuse_entry(raw, f"is corrupt ({error})") from None
                if not chunk:
                    break
                written += len(chunk)
                if written > info.file_size:
                    raise _refuse_entry(
                        raw, f"decompresses past its declared size of {info.file_size} bytes"
                    )
                if written > budget:
                    raise PayloadTooLargeError(
                        f"the archive expands past the limit of its uncompressed size while "
                        f"extracting {raw!r} (GANSERVE_MAX_UPLOAD_UNCOMPRESSED_BYTES)",
                        field="body",
                        limit="max_upload_uncompressed_bytes",
                        entry=raw,
                    )
                sink.write(chunk)
    return written


def check_image_header(path: Path, entry: str, limits: UploadLimits) -> None:
    """422 unless `path` is a PNG or JPEG (by content) declaring at most max_image_pixels.

    Only the header is read: a decompression bomb is refused before any pixel is decoded.
    """
    pixel_limit = (
        f"the limit of {limits.max_image_pixels} pixels per image "
        "(GANSERVE_MAX_UPLOAD_IMAGE_PIXELS)"
    )
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own, far higher, limit
        raise _refuse_entry(entry, f"declares more pixels than {pixel_limit}") from None
    except UnidentifiedImageError:
        raise _refuse_entry(entry, "is not a PNG or JPEG image") from None
    except Exception as error:  # Pillow's parsers raise assorted types on hostile input
        raise _refuse_entry(
            entry, f"is not a PNG or JPEG image Pillow can read ({error})"
        ) from None
    if width * height > limits.max_image_pixels:
        raise _refuse_entry(
            entry, f"declares {width}x{height} = {width * height} pixels, over {pixel_limit}"
        )


def extract_images(
    archive_path: Path, infos: list[zipfile.ZipInfo], dest: Path, limits: UploadLimits
) -> Path:
    """Extract the image members of a validated zip into `dest` (created); returns it.

    Each image's header is checked as soon as it is written, so a bad one stops extraction.
    """
    plan = plan_layout(infos)
    dest.mkdir()
    root = dest.resolve()
    budget = limits.max_uncompressed_bytes
    with zipfile.ZipFile(archive_path) as archive:
        for info, parts in plan:
            target = root.joinpath(*parts)
            # The names were checked already; this guards the invariant itself.
            if not target.resolve().is_relative_to(root):
                raise _refuse_entry(info.orig_filename, "would be written outside the archive")
            target.parent.mkdir(parents=True, exist_ok=True)
            budget -= _copy_member(archive, info, target, budget)
            check_image_header(target, info.orig_filename, limits)
    return dest


def build_dataset(
    archive_path: Path,
    work_dir: Path,
    name: str,
    limits: UploadLimits,
    image_size: int | None = None,
    channels: int | None = None,
) -> ImageDataset:
    """Validate, extract and decode the zip at `archive_path` (blocking; run it in a thread)."""
    infos = validate_zip(archive_path, limits)
    root = extract_images(archive_path, infos, work_dir / "images", limits)
    try:
        return load_image_folder(root, image_size=image_size, channels=channels, name=name)
    except DatasetError as error:
        # Name the archive's paths, not the server's temporary folder.
        detail = str(error).replace(f"{root}/", "").replace(str(root), "the archive")
        raise _invalid(detail) from None


# --- publishing ---------------------------------------------------------------------------


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some platforms cannot open folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(dataset: ImageDataset, work_dir: Path, final: Path) -> None:
    """Write `dataset` packed, then make it appear at `final` at once, never replacing one.

    The file is written (and fsynced) in the work folder, then hard-linked into place: the
    link is atomic and fails when the name exists, so of two concurrent uploads of one name
    the second gets 409 instead of silently replacing the first.
    """
    staged = work_dir / "packed.npz"
    save_packed(dataset, staged)
    final.parent.mkdir(parents=True, exist_ok=True)
    taken = ConflictError(f"dataset {dataset.name!r} already exists", field="name")
    try:
        os.link(staged, final)
    except FileExistsError:
        raise taken from None
    except OSError:
        # No hard links here (another filesystem, or one without links): fall back to
        # save_packed's own temp file and rename, which is atomic but could replace a
        # dataset uploaded in the last instant.
        if final.exists():
            raise taken from None
        save_packed(dataset, final)
    _fsync_folder(final.parent)


# --- the whole upload ---------------------------------------------------------------------


def purge_stale_work(tmp_root: Path, now: float | None = None) -> None:
    """Remove upload work folders left by a process that died mid-upload."""
    cutoff = (time.time() if now is None else now) - STALE_WORK_S
    for folder in tmp_root.glob(f"{WORK_PREFIX}*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def _ingest_archive(
    archive_path: Path,
    work_dir: Path,
    final: Path,
    name: str,
    limits: UploadLimits,
    image_size: int | None,
    channels: int | None,
) -> ImageDataset:
    dataset = build_dataset(archive_path, work_dir, name, limits, image_size, channels)
    publish(dataset, work_dir, final)
    return dataset


async def ingest_upload(
    body: AsyncIterable[bytes],
    *,
    name: str,
    data_dir: Path,
    limits: UploadLimits,
    content_type: str | None = None,
    content_length: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
) -> Path:
    """Turn an uploaded zip into the packed dataset `name`; the path it was published at.

    Raises a ServiceError (4xx) saying why an upload is refused. Whatever happens, the work
    folder under data_dir/tmp (the spooled body, the extracted images) is removed.
    """
    check_upload_name(name, data_dir)
    check_content_length(content_length, limits)
    final = packed_dataset_path(data_dir, name)
    tmp_root = data_dir / TMP_FOLDER
    tmp_root.mkdir(parents=True, exist_ok=True)
    purge_stale_work(tmp_root)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix=WORK_PREFIX) as work:
        work_dir = Path(work)
        archive_path = work_dir / "upload.zip"
        size = await receive_body(body, archive_path, content_type=content_type, limits=limits)
        # Decompression, decoding and compression are blocking CPU and disk work.
        dataset = await run_in_threadpool(
            _ingest_archive, archive_path, work_dir, final, name, limits, image_size, channels
        )
    log.info(
        "dataset %s uploaded: %d images of %dx%d, %d classes (%d bytes received)",
        name, len(dataset), dataset.image_size, dataset.image_size, dataset.num_classes, size,
    )  # fmt: skip
    return final
