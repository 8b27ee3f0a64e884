"""`ganserve translate RUN in.png -o out.png` (local) and `ganserve models translate NAME ...`
(through a running service): image-to-image with a CycleGAN model.

Both give the same bytes for the same input and model version: the service and this command
call the same `gan.translation.translate.translate_picture`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from ganserve.cli.client import DEFAULT_URL, KeyOption, UrlOption, _check, _client, models_app
from ganserve.cli.client import unreachable as _unreachable
from ganserve.gan.errors import GanError
from ganserve.gan.sample import encode_png
from ganserve.gan.translation.translate import (
    decode_picture,
    is_translator,
    load_translator,
    translate_picture,
)

console = Console(stderr=True, soft_wrap=True)
LOCAL_MAX_PIXELS = 64 * 1024 * 1024  # a local picture may be large, not unbounded
_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".zip": "application/zip",
}

Direction = Annotated[str, typer.Option("--direction", "-d", help="a2b (domain A to B) or b2a.")]
KeepSize = Annotated[
    bool,
    typer.Option(
        "--keep-size/--model-size",
        help="Translate at the picture's own size (default: centre-crop and resize to the "
        "model's size).",
    ),
]
Output = Annotated[Path, typer.Option("--output", "-o", help="File to write (PNG, or zip).")]


def _translator_folder(run: Path) -> Path:
    for folder in (run, run / "generator", run / "translator"):
        if is_translator(folder):
            return folder
    console.print(f"[red]error:[/red] no translator.json in {run} (nor its generator/ folder)")
    raise typer.Exit(2)


def translate_command(
    run: Annotated[Path, typer.Argument(help="A run folder holding translator.json.")],
    image: Annotated[Path, typer.Argument(help="PNG or JPEG to translate.")],
    output: Output,
    direction: Direction = "a2b",
    keep_size: KeepSize = False,
) -> None:
    """Translate a picture with a CycleGAN model exported on this machine."""
    try:
        translator = load_translator(_translator_folder(run))
        picture = decode_picture(image.read_bytes(), LOCAL_MAX_PIXELS)
        png = encode_png(translate_picture(translator, picture, direction, keep_size))
    except (GanError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    output.write_bytes(png)
    console.print(f"wrote {output} ({len(png)} bytes, {direction})")


@models_app.command("translate")
def translate_remote(
    name: str,
    image: Annotated[Path, typer.Argument(help="PNG, JPEG, or a zip of them.")],
    output: Output,
    direction: Direction = "a2b",
    keep_size: KeepSize = False,
    version: Annotated[str, typer.Option(help="Version number or alias.")] = "latest",
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Translate a picture (or a zip of pictures) with a CycleGAN model of the service."""
    media_type = _TYPES.get(image.suffix.lower())
    if media_type is None:
        console.print(f"[red]error:[/red] {image} is not .png, .jpg or .zip")
        raise typer.Exit(2)
    params = {"direction": direction, "version": version, "keep_size": str(keep_size).lower()}
    try:
        with _client(url, api_key, timeout=None) as client:
            response = client.post(
                f"/v1/models/{name}/translate", params=params, content=image.read_bytes(),
                headers={"Content-Type": media_type},
            )  # fmt: skip
    except httpx.TransportError as exc:
        _unreachable(url, exc)
    _check(response)
    output.write_bytes(response.content)
    served = response.headers.get("x-model-version", "?")
    console.print(f"wrote {output} ({len(response.content)} bytes, {name} v{served}, {direction})")
