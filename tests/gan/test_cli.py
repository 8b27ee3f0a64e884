from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from ganserve.cli.main import app

runner = CliRunner()


def test_train_then_sample_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "x"
    result = runner.invoke(
        app,
        ["train", "--dataset", "digits", "--steps", "12", "--out", str(out), "--device", "cpu",
         "--checkpoint-every", "5", "--batch-size", "64"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-000000005.pt", "step-000000010.pt", "step-000000012.pt",
    ]  # fmt: skip
    assert json.loads((out / "generator.json").read_text())["step"] == 12
    assert Image.open(out / "preview.png").size == (8 * 9 + 1, 8 * 9 + 1)

    grid = tmp_path / "grid.png"
    result = runner.invoke(app, ["sample", str(out), "--seed", "3", "-n", "16", "-o", str(grid)])
    assert result.exit_code == 0, result.output
    # readable by default: the 37 px grid of 8x8 digits scaled 7x to at least 256 px
    assert Image.open(io.BytesIO(grid.read_bytes())).size == (7 * 37, 7 * 37)
    again = tmp_path / "again.png"
    runner.invoke(app, ["sample", str(out), "--seed", "3", "-n", "16", "-o", str(again)])
    assert again.read_bytes() == grid.read_bytes()
    small = tmp_path / "small.png"
    result = runner.invoke(app, ["sample", str(out), "--seed", "3", "-n", "16", "--scale", "1",
                                 "-o", str(small)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(small).size == (4 * 9 + 1, 4 * 9 + 1)
    one = tmp_path / "one.png"
    runner.invoke(app, ["sample", str(out), "-o", str(one)])
    assert Image.open(one).size == (256, 256)  # one 8x8 digit, 32x


def test_bad_options_exit_with_a_clear_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--architecture", "resnet", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "architecture: invalid value 'resnet'; valid choices are: mlp, dcgan" in result.output
    result = runner.invoke(app, ["sample", str(tmp_path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "no readable exported generator" in result.output
    result = runner.invoke(app, ["train", "--dataset", "mnist", "--out", str(tmp_path / "r"),
                                 "--data-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2 and "train-images-idx3-ubyte" in result.output
