"""`ganserve translate`: local translation with an exported CycleGAN, same bytes as served."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image
from typer.testing import CliRunner

from ganserve.cli.main import app
from ganserve.gan.translation.models import ResnetGenerator, TranslatorSpec
from ganserve.gan.translation.translate import export_translator, load_translator
from ganserve.service.translation import translate_image
from ganserve.settings import Settings

runner = CliRunner()
SPEC = TranslatorSpec(channels=3, image_size=16, width=4, blocks=1, d_width=4, d_layers=1)


def test_translate_writes_the_same_png_as_the_service(tmp_path: Path) -> None:
    torch.manual_seed(1)
    run = tmp_path / "run"
    export_translator(ResnetGenerator(SPEC), ResnetGenerator(SPEC), run / "generator", {})
    picture = tmp_path / "in.png"
    Image.new("L", (21, 13), 90).save(picture)
    out = tmp_path / "out.png"
    args = ["translate", str(run), str(picture), "-o", str(out), "--direction", "b2a"]
    result = runner.invoke(app, [*args, "--keep-size"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (21, 13)
    served = translate_image(
        load_translator(run / "generator"), picture.read_bytes(), "b2a", True, Settings()
    )
    assert out.read_bytes() == served
    assert runner.invoke(app, args).exit_code == 0
    assert Image.open(io.BytesIO(out.read_bytes())).size == (16, 16)


def test_translate_names_what_is_wrong(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["translate", str(tmp_path), str(tmp_path / "x.png"), "-o", "o.png"]
    )
    assert result.exit_code == 2 and "translator.json" in result.output
    export_translator(ResnetGenerator(SPEC), ResnetGenerator(SPEC), tmp_path, {})
    (tmp_path / "x.png").write_bytes(b"text")
    result = runner.invoke(
        app, ["translate", str(tmp_path), str(tmp_path / "x.png"), "-o", "o.png"]
    )
    assert result.exit_code == 2 and "not a readable PNG or JPEG" in result.output
    picture = tmp_path / "y.png"
    Image.new("RGB", (8, 8)).save(picture)
    args = ["translate", str(tmp_path), str(picture), "-o", str(tmp_path / "o.png"), "-d", "up"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "direction" in result.output


def test_train_a_cyclegan_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--architecture", "cyclegan", "--steps", "2", "--batch-size", "2",
            "--cyclegan-width", "4", "--pool-size", "2", "--eval-every", "0", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "translator.json").is_file() and (out / "preview.png").is_file()
    picture = tmp_path / "in.png"
    Image.new("RGB", (10, 10), (200, 0, 0)).save(picture)
    translated = runner.invoke(
        app, ["translate", str(out), str(picture), "-o", str(tmp_path / "o.png")]
    )
    assert translated.exit_code == 0, translated.output
    assert Image.open(tmp_path / "o.png").size == (32, 32)  # the built-in pair's size
    alone = ["--dataset", "digits-on-colour", "--out", str(tmp_path / "x")]
    bad = runner.invoke(app, ["train", "--architecture", "cyclegan", *alone])
    assert bad.exit_code == 2 and "dataset_b" in bad.output
