"""Translating uploads (service.translation): formats, bounds, zips, hostile inputs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganserve.gan.errors import ConfigError
from ganserve.gan.translation.models import ResnetGenerator, TranslatorSpec
from ganserve.gan.translation.translate import LoadedTranslator, export_translator, load_translator
from ganserve.service.errors import InvalidInputError, PayloadTooLargeError
from ganserve.service.translation import media_type, translate_image, translate_zip
from ganserve.settings import Settings

SPEC = TranslatorSpec(channels=3, image_size=16, width=4, blocks=1, d_width=4, d_layers=1)


@pytest.fixture(scope="module")
def translator(tmp_path_factory: pytest.TempPathFactory) -> LoadedTranslator:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("translator")
    export_translator(ResnetGenerator(SPEC), ResnetGenerator(SPEC), folder, {})
    return load_translator(folder)


def _png(size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 120).save(buffer, format=fmt)
    return buffer.getvalue()


def _decoded(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


def test_translates_to_the_model_size_or_keeps_the_picture_size(
    translator: LoadedTranslator,
) -> None:
    settings = Settings()
    out = translate_image(translator, _png((40, 30)), "a2b", False, settings)
    assert _decoded(out).size == (16, 16) and _decoded(out).mode == "RGB"
    kept = translate_image(translator, _png((37, 21), "L", "JPEG"), "b2a", True, settings)
    assert _decoded(kept).size == (37, 21)
    again = translate_image(translator, _png((37, 21), "L", "JPEG"), "b2a", True, settings)
    assert kept == again  # same input, same bytes
    other = translate_image(translator, _png((37, 21), "L", "JPEG"), "a2b", True, settings)
    assert other != kept


@pytest.mark.parametrize("body", [b"", b"not an image", b"GIF89a" + bytes(20), _png((8, 8))[:40]])
def test_non_images_are_422_naming_the_image(translator: LoadedTranslator, body: bytes) -> None:
    with pytest.raises(ConfigError, match="^image: not a readable PNG or JPEG"):
        translate_image(translator, body, "a2b", False, Settings())


def test_pixel_bombs_are_refused_before_decoding(translator: LoadedTranslator) -> None:
    settings = Settings(max_upload_image_pixels=64 * 64, max_translate_pixels=32 * 32)
    bomb = _png((5000, 5000), "L")  # a few KB that inflate to 25 MP
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLargeError, match="over the limit") as info:
        translate_image(translator, bomb, "a2b", False, settings)
    assert info.value.field == "image"
    with pytest.raises(PayloadTooLargeError, match="keep_size"):
        translate_image(translator, _png((40, 40)), "a2b", True, settings)
    assert translate_image(translator, _png((40, 40)), "a2b", False, settings)


def test_wrong_channels_are_converted(translator: LoadedTranslator) -> None:
    for mode in ("L", "LA", "RGBA", "P", "I;16", "CMYK"):
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        out = translate_image(translator, _png((20, 20), mode, fmt), "a2b", False, Settings())
        assert _decoded(out).mode == "RGB"


def test_direction_is_validated(translator: LoadedTranslator) -> None:
    with pytest.raises(ConfigError, match="direction"):
        translate_image(translator, _png((8, 8)), "up", False, Settings())


def test_media_types() -> None:
    assert media_type("image/png; charset=x") == "image/png"
    with pytest.raises(InvalidInputError, match="content-type"):
        media_type("text/plain")


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_in_zip_out_deterministic(translator: LoadedTranslator) -> None:
    body = _zip({"x/a.jpg": _png((20, 20), fmt="JPEG"), "b.png": _png((9, 33)),
                 "__MACOSX/._b.png": b"junk", "notes.txt": b"hi"})  # fmt: skip
    out = translate_zip(translator, body, "a2b", True, Settings())
    assert out == translate_zip(translator, body, "a2b", True, Settings())
    with zipfile.ZipFile(io.BytesIO(out)) as archive:
        assert archive.namelist() == ["x/a.png", "b.png"]
        assert _decoded(archive.read("b.png")).size == (9, 33)


def test_hostile_zips_are_refused(translator: LoadedTranslator, tmp_path: Path) -> None:
    settings = Settings(max_bulk_samples=2, max_upload_compression_ratio=10.0)
    with pytest.raises(InvalidInputError, match="not a readable zip"):
        translate_zip(translator, b"PK\x03\x04 broken", "a2b", False, settings)
    with pytest.raises(InvalidInputError, match="no .png"):
        translate_zip(translator, _zip({"a.txt": b"x"}), "a2b", False, settings)
    many = _zip({f"{i}.png": _png((8, 8)) for i in range(3)})
    with pytest.raises(PayloadTooLargeError, match="3 images"):
        translate_zip(translator, many, "a2b", False, settings)
    squashed = _zip({"z.png": bytes(1_000_000)}, zipfile.ZIP_DEFLATED)
    with pytest.raises(PayloadTooLargeError, match="compresses"):
        translate_zip(translator, squashed, "a2b", False, settings)
    with pytest.raises(InvalidInputError, match="'bad.png'"):
        translate_zip(translator, _zip({"bad.png": b"nope"}), "a2b", False, settings)
    assert list(tmp_path.iterdir()) == []  # nothing is ever written
