"""What a translation model serves: the exported generators and `translate`.

Exported translator: `translator.safetensors` (the EMA copies of G: A -> B under `a2b.` and
F: B -> A under `b2a.`) + `translator.json` (format, the TranslatorSpec that rebuilds both,
the two datasets, step, training config, sha256 of the tensors). The JSON is written last;
loading checks format, version and hash and never unpickles anything (gan/bundle.py).

`translate` is fully convolutional: an image of any size is padded (reflection where it
can, edge replication for tiny images) to a multiple of the generator's stride and at least
2 * stride, translated, and cropped back, so the output has the input's size exactly.
`to_domain` converts a decoded picture to the model's training domain first (centre crop,
resize, grey <-> RGB); with keep_size only the channels are converted.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image, ImageOps

from ganserve.gan.bundle import module_tensors, read_bundle, write_bundle
from ganserve.gan.errors import CheckpointError, ConfigError
from ganserve.gan.translation.models import ResnetGenerator, TranslatorSpec

TRANSLATOR_FORMAT = "ganserve-translator"
TRANSLATOR_FORMAT_VERSION = 1
TRANSLATOR_NAME = "translator"
TRANSLATOR_WEIGHTS = f"{TRANSLATOR_NAME}.safetensors"
TRANSLATOR_DESCRIPTION = f"{TRANSLATOR_NAME}.json"
DIRECTIONS = ("a2b", "b2a")


# ----------------------------------------------------------------------------- translate


def _pad_amounts(size: int, stride: int) -> tuple[int, int]:
    target = max(math.ceil(size / stride) * stride, 2 * stride)
    extra = target - size
    return extra // 2, extra - extra // 2  # (before, after)


def translate_tensor(generator: ResnetGenerator, x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1], any H, W >= 1 -> (N, C, H, W) translated, same size."""
    stride = generator.spec.stride
    top, bottom = _pad_amounts(x.shape[2], stride)
    left, right = _pad_amounts(x.shape[3], stride)
    if top or bottom or left or right:
        fits = max(top, bottom) < x.shape[2] and max(left, right) < x.shape[3]
        x = F.pad(x, (left, right, top, bottom), mode="reflect" if fits else "replicate")
    out = generator(x)
    return out[:, :, top : out.shape[2] - bottom, left : out.shape[3] - right]


def translate(
    generator: ResnetGenerator, images: torch.Tensor, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, H, W) uint8 translations, in eval mode, same size.

    Deterministic: same input, same generator, same device and thread count, same bytes.
    """
    spec = generator.spec
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != spec.channels:
        raise ConfigError(
            "image", f"expected (N, {spec.channels}, H, W) uint8, got {images.dtype} "
            f"{tuple(images.shape)}",
        )  # fmt: skip
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            x = images.to(device).float().div_(127.5).sub_(1.0)  # -> [-1, 1]
            y = translate_tensor(generator, x)
    finally:
        generator.train(was_training)
    return ((y.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8).cpu()


def translation_grid(
    g_ab: ResnetGenerator,
    g_ba: ResnetGenerator,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(6k, H, W, C) uint8 rows of k: real A, G(A), F(G(A)), real B, F(B), G(F(B)).

    Laid out with make_grid(..., nrow=k) it reads: inputs, translations, reconstructions.
    """
    fake_b = translate(g_ab, real_a, device)
    rec_a = translate(g_ba, fake_b, device)
    fake_a = translate(g_ba, real_b, device)
    rec_b = translate(g_ab, fake_a, device)
    rows = torch.cat([real_a, fake_b, rec_a, real_b, fake_a, rec_b])  # (6k, C, H, W)
    return rows.permute(0, 2, 3, 1).contiguous()


# ----------------------------------------------------------------------------- pictures


_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_domain(image: Image.Image, channels: int, size: int | None) -> torch.Tensor:
    """A decoded picture -> (1, channels, h, w) uint8 in the model's domain.

    EXIF rotation applied; transparency composited on white; 16-bit scaled to 8; converted
    to grey (ITU-R 601 luma) or RGB (grey repeated) as the model takes. With `size`, the
    largest centred square is cropped and resized (LANCZOS) to size x size; without it the
    picture keeps its own width and height (keep_size).
    """
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit or float grey: to 0..255
        pixels = np.asarray(image, dtype=np.float64)
        scale = 257.0 if pixels.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(np.rint(pixels / scale), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" or "A" in image.mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None:
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        if side != size:
            image = image.resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]  # (h, w) -> (h, w, 1)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)  # (1, C, h, w)


PICTURE_FORMATS = ("PNG", "JPEG")  # as Pillow names the decoded format


def decode_picture(data: bytes, max_pixels: int) -> Image.Image:
    """PNG or JPEG bytes -> a decoded picture, or ConfigError("image", why).

    The header is read first: a picture over `max_pixels` (width x height) is refused before
    any pixel is decoded, so a small file that inflates to a huge bitmap costs nothing.
    Animated PNGs give their first frame.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(PICTURE_FORMATS))
            width, height = image.size
            if width * height > max_pixels:
                raise ConfigError(
                    "image", f"{width}x{height} is {width * height} pixels, over the limit of "
                    f"{max_pixels}",
                )  # fmt: skip
            image.load()
    except ConfigError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        raise ConfigError("image", f"not a readable PNG or JPEG image ({exc})") from exc
    return image


def translate_picture(
    translator: LoadedTranslator,
    picture: Image.Image,
    direction: str,
    keep_size: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A decoded picture -> its (H, W, C) uint8 translation (H, W: the model's size, or the
    picture's own with keep_size)."""
    generator = translator.generator(direction)
    spec = translator.spec
    image = to_domain(picture, spec.channels, None if keep_size else spec.image_size)
    return translate(generator, image, device)[0].permute(1, 2, 0).contiguous()


# ----------------------------------------------------------------------------- export


@dataclass(frozen=True)
class LoadedTranslator:
    a2b: ResnetGenerator  # eval mode, on the requested device
    b2a: ResnetGenerator
    description: dict[str, Any]  # the translator.json contents

    @property
    def spec(self) -> TranslatorSpec:
        return self.a2b.spec

    def generator(self, direction: str) -> ResnetGenerator:
        if direction not in DIRECTIONS:
            raise ConfigError(
                "direction", f"invalid value {direction!r}; valid choices are: a2b, b2a"
            )
        return self.a2b if direction == "a2b" else self.b2a


def export_translator(
    g_ab: ResnetGenerator,
    g_ba: ResnetGenerator,
    folder: Path,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write both (EMA) generators as one safetensors + JSON bundle; returns the description.

    `extra` adds plain JSON fields (datasets, step, training config).
    """
    tensors = {f"a2b.{k}": v for k, v in module_tensors(g_ab).items()}
    tensors |= {f"b2a.{k}": v.clone() for k, v in module_tensors(g_ba).items()}
    return write_bundle(
        folder,
        TRANSLATOR_NAME,
        tensors,
        {
            **extra,
            "format": TRANSLATOR_FORMAT,
            "format_version": TRANSLATOR_FORMAT_VERSION,
            "spec": g_ab.spec.to_dict(),
        },
    )


def is_translator(folder: Path) -> bool:
    return (folder / TRANSLATOR_DESCRIPTION).is_file()


def load_translator(folder: Path, device: torch.device | str = "cpu") -> LoadedTranslator:
    """Rebuild both generators from JSON + safetensors; verifies the content hash."""
    description, tensors = read_bundle(
        folder, TRANSLATOR_NAME, kind="exported translator", fmt=TRANSLATOR_FORMAT,
        version=TRANSLATOR_FORMAT_VERSION,
    )  # fmt: skip
    try:
        spec = TranslatorSpec.from_dict(description["spec"])
        nets = []
        for direction in DIRECTIONS:
            prefix = f"{direction}."
            net = ResnetGenerator(spec)
            net.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
                strict=True,
            )
            nets.append(net.to(device).eval().requires_grad_(False))
    except Exception as exc:  # wrong shapes, bad spec
        raise CheckpointError(f"cannot rebuild the translator in {folder}: {exc}") from exc
    return LoadedTranslator(nets[0], nets[1], description)
