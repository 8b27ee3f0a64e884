"""PNG bytes of a uint8 picture: Pillow's own bytes, without Pillow's per-file Python.

Every PNG ganserve makes has no metadata, so its bytes are Pillow's IHDR, its IDAT data (the
"zip" encoder: Pillow's adaptive row filters and zlib at the asked level) and IEND. For a
28x28 image Pillow's `Image.save` spends most of its time in Python around the encoder (the
plugin registry, `ImageFile._save`, a file object, one call per chunk): 100 us, against 54
for the same bytes written here (bench/README.md). `encode_png` drives the same C encoder
with the same arguments and writes the three chunks itself, IDAT split exactly where Pillow
splits it (one chunk per `encode(bufsize)` call). The bytes are Pillow's: a check at first
use compares both on a few pictures, and a Pillow that encodes differently, or lacks the
calls used here, makes every PNG go through `Image.save` instead.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import zlib

import numpy as np
from PIL import Image, ImageFile

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: ("L", 0), 3: ("RGB", 2)}  # channels -> (Pillow mode, PNG colour type)
_BIT_DEPTH = 8

log = logging.getLogger(__name__)

_direct: bool | None = None  # None until checked; then whether the direct path gives Pillow's bytes
_direct_lock = threading.Lock()


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """(H, W, C) uint8 with C in {1, 3} -> PNG bytes (no metadata, so bytes are reproducible)."""
    if image.ndim != 3 or image.shape[2] not in _COLOR_TYPES or image.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 1|3) uint8, got {image.shape} {image.dtype}")
    if _direct if _direct is not None else _check_direct():
        return _direct_png(image, compress_level)
    return pillow_png(image, compress_level)


def pillow_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """The reference: `Image.save` to PNG with nothing but the compression level."""
    mode, _ = _COLOR_TYPES[image.shape[2]]
    picture = Image.fromarray(image[:, :, 0] if mode == "L" else image, mode)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    # length, type, data, CRC of type + data (PNG spec, 5.3)
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _direct_png(image: np.ndarray, compress_level: int) -> bytes:
    height, width, channels = image.shape
    mode, color_type = _COLOR_TYPES[channels]
    core = Image.core.new(mode, (width, height))  # Pillow's image memory, filled by its decoder
    decoder = Image._getdecoder(mode, "raw", (mode, 0, 1))
    try:
        decoder.setimage(core, (0, 0, width, height))
        decoder.decode(np.ascontiguousarray(image).tobytes())
    finally:
        decoder.cleanup()
    header = struct.pack(">IIBBBBB", width, height, _BIT_DEPTH, color_type, 0, 0, 0)
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", header)]
    # PngImagePlugin's encoder arguments: (optimize, compress_level, compress_type, dictionary)
    encoder = Image._getencoder(mode, "zip", mode, (False, compress_level, -1, b""))
    bufsize = max(ImageFile.MAXBLOCK, width * 4)  # as ImageFile._save sizes it
    try:
        encoder.setimage(core, (0, 0, width, height))
        while True:
            _, status, data = encoder.encode(bufsize)
            parts.append(_chunk(b"IDAT", data))  # Pillow writes each call's output as one IDAT
            if status:
                break
    finally:
        encoder.cleanup()
    if status < 0:
        raise OSError(f"PNG encoder error {status}")
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def _check_pictures() -> list[np.ndarray]:
    """Grey and colour pictures, flat, smooth and noisy, one large enough for several IDATs."""
    rng = np.random.default_rng(20261207)
    ramp = (np.add.outer(np.arange(40), np.arange(33)) % 256).astype(np.uint8)[:, :, None]
    return [
        np.zeros((1, 1, 1), np.uint8),
        ramp,
        rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
        rng.integers(0, 256, (17, 9, 3), dtype=np.uint8),
        np.repeat(ramp, 3, axis=2),
        rng.integers(0, 256, (300, 300, 1), dtype=np.uint8),  # > 64 KiB compressed: 2 IDATs
    ]


def _check_direct() -> bool:
    global _direct
    with _direct_lock:
        if _direct is None:
            try:
                _direct = all(
                    _direct_png(picture, level) == pillow_png(picture, level)
                    for picture in _check_pictures()
                    for level in (1, 6)
                )
            except Exception:  # a Pillow without these calls
                _direct = False
            if not _direct:
                log.warning("this Pillow encodes PNGs differently: every PNG uses Image.save")
        return _direct
