"""gan.png: Pillow's PNG bytes, written without Image.save's Python."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ganserve.gan import png


def _pictures() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    digits_like = np.zeros((28, 28, 1), np.uint8)
    digits_like[6:22, 10:18] = rng.integers(120, 256, (16, 8, 1), dtype=np.uint8)
    return [
        np.full((1, 1, 1), 255, np.uint8),
        digits_like,
        rng.integers(0, 256, (233, 233, 1), dtype=np.uint8),  # a 64-grid of 28 px digits
        rng.integers(0, 256, (5, 3, 3), dtype=np.uint8),
        rng.integers(0, 256, (130, 131, 3), dtype=np.uint8),
        rng.integers(0, 256, (600, 500, 1), dtype=np.uint8),  # several IDAT chunks
        np.zeros((2000, 3, 1), np.uint8),  # tall and narrow
    ]


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_bytes_are_pillows_own(level: int) -> None:
    for picture in _pictures():
        expected = png.pillow_png(picture, level)
        assert png._direct_png(picture, level) == expected
        assert png.encode_png(picture, level) == expected


def test_a_large_picture_is_split_into_idat_chunks_where_pillow_splits_it() -> None:
    picture = np.random.default_rng(1).integers(0, 256, (600, 500, 1), dtype=np.uint8)
    data = png.encode_png(picture)
    chunks, at = [], 8
    while at < len(data):
        (length,) = np.frombuffer(data[at : at + 4], ">u4")
        chunks.append(data[at + 4 : at + 8])
        at += 12 + int(length)
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    assert chunks.count(b"IDAT") >= 2  # 300 kB of noise does not fit one 64 KiB encoder call
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(decoded, picture[:, :, 0])


def test_colour_pictures_decode_to_their_pixels() -> None:
    picture = np.random.default_rng(2).integers(0, 256, (19, 23, 3), dtype=np.uint8)
    decoded = Image.open(io.BytesIO(png.encode_png(picture)))
    assert decoded.mode == "RGB"
    assert np.array_equal(np.asarray(decoded), picture)


def test_a_non_contiguous_picture_is_encoded_as_its_values() -> None:
    picture = np.random.default_rng(3).integers(0, 256, (20, 30, 1), dtype=np.uint8)
    view = picture[:, ::-1]  # negative strides
    assert png.encode_png(view) == png.pillow_png(np.ascontiguousarray(view))


def test_a_pillow_that_encodes_differently_falls_back_to_image_save(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picture = np.random.default_rng(4).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    expected = png.pillow_png(picture)
    monkeypatch.setattr(png, "_direct", None)  # not checked yet
    monkeypatch.setattr(png, "_direct_png", lambda image, level: b"other bytes")
    assert png.encode_png(picture) == expected
    assert png._direct is False  # decided once


def test_a_pillow_without_the_calls_falls_back_to_image_save(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picture = np.random.default_rng(5).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    expected = png.pillow_png(picture)

    def missing(*args: object) -> object:
        raise AttributeError("module 'PIL.Image' has no attribute 'core'")

    monkeypatch.setattr(png, "_direct", None)
    monkeypatch.setattr(png, "_direct_png", missing)
    assert png.encode_png(picture) == expected
    assert png._direct is False


def test_wrong_shapes_and_types_are_refused() -> None:
    for bad in (
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4, 4, 1), np.float32),
    ):
        with pytest.raises(ValueError, match="expected"):
            png.encode_png(bad)
