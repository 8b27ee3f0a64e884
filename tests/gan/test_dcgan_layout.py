"""dcgan layouts (gan/models.py): new models get layout 2, every older one keeps layout 1.

Layout 1's parameter shapes are recorded here: a generator exported before layouts were
numbered must load into the network its description rebuilds, after any upgrade.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import ganserve.gan.train as train_module
from ganserve.gan.checkpoint import list_checkpoints, read_checkpoint, write_checkpoint
from ganserve.gan.config import DCGAN_LAYOUT, ModelSpec, TrainConfig
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import ConfigError
from ganserve.gan.models import Discriminator, Generator
from ganserve.gan.train import train

NEW = ModelSpec("dcgan", 1, 8, 100, "normal")
OLD = ModelSpec("dcgan", 1, 8, 100, "normal", dcgan_layout=1)

# parameter name -> shape of layout 1, as every dcgan exported before layouts has them
LAYOUT_1_G = {
    8: {"net.0.weight": (1024, 100), "net.2.weight": (64,), "net.2.bias": (64,),
        "net.4.weight": (64, 1, 4, 4), "net.4.bias": (1,)},
    28: {"net.0.weight": (6272, 100), "net.2.weight": (128,), "net.2.bias": (128,),
         "net.4.weight": (128, 64, 4, 4), "net.5.weight": (64,), "net.5.bias": (64,),
         "net.7.weight": (64, 1, 4, 4), "net.7.bias": (1,)},
}  # fmt: skip
LAYOUT_1_D = {
    8: {"features.0.weight": (64, 1, 4, 4), "features.0.bias": (64,),
        "head.linear.weight": (1, 1024), "head.linear.bias": (1,)},
    28: {"features.0.weight": (64, 1, 4, 4), "features.0.bias": (64,),
         "features.2.weight": (128, 64, 4, 4), "features.2.bias": (128,),
         "head.linear.weight": (1, 6272), "head.linear.bias": (1,)},
}  # fmt: skip


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


def _without_layout(spec: ModelSpec) -> dict[str, Any]:
    """The description a dcgan exported before layouts were numbered carries."""
    data = spec.to_dict()
    del data["dcgan_layout"]
    return data


def test_an_old_description_reads_as_layout_1_and_new_specs_are_layout_2() -> None:
    assert DCGAN_LAYOUT == 2 and NEW.dcgan_layout == 2
    assert ModelSpec.from_dict(_without_layout(NEW)) == OLD
    assert ModelSpec.from_dict(NEW.to_dict()) == NEW
    assert ModelSpec.from_dict(OLD.to_dict()) == OLD
    with pytest.raises(ConfigError, match="dcgan_layout: must be between 1 and 2, got 3"):
        ModelSpec.from_dict({**NEW.to_dict(), "dcgan_layout": 3})


@pytest.mark.parametrize("size", [8, 28])
def test_layout_1_keeps_the_parameters_old_exports_hold(size: int) -> None:
    old = ModelSpec.from_dict(_without_layout(ModelSpec("dcgan", 1, size, 100, "normal")))
    assert _shapes(Generator(old)) == LAYOUT_1_G[size]
    assert _shapes(Discriminator(old)) == LAYOUT_1_D[size]


def _conv3x3_widths(module: nn.Module) -> list[tuple[int, int]]:
    return [
        (m.in_channels, m.out_channels)
        for m in module.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]


@pytest.mark.parametrize(
    ("size", "g_convs", "d_convs"),
    [
        (8, [(128, 128), (128, 1)], [(1, 64), (64, 64)]),
        (28, [(256, 256), (128, 128), (128, 1)], [(1, 64), (64, 64), (128, 128)]),
        # 64 px: G's widths capped at 8 x dcgan_width, layout 1's widest
        (64, [(256, 256), (256, 256), (128, 128), (64, 64), (64, 3)],
         [(3, 32), (32, 32), (64, 64), (128, 128), (256, 256)]),
    ],
)  # fmt: skip
def test_layout_2_adds_a_3x3_convolution_at_every_resolution_and_widens_g(
    size: int, g_convs: list[tuple[int, int]], d_convs: list[tuple[int, int]]
) -> None:
    channels, width = (3, 32) if size == 64 else (1, 64)
    spec = ModelSpec("dcgan", channels, size, 16, "normal", dcgan_width=width)
    generator, discriminator = Generator(spec).eval(), Discriminator(spec)
    assert _conv3x3_widths(generator) == g_convs
    assert _conv3x3_widths(discriminator) == d_convs
    with torch.no_grad():
        images = generator(torch.randn(3, 16))
        logits = discriminator(images)
    assert images.shape == (3, channels, size, size)
    assert float(images.abs().max()) <= 1.0
    assert logits.shape == (3,)


def test_a_dcgan_run_checkpointed_before_layouts_resumes_as_layout_1(
    digits: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(
        architecture="dcgan", steps=6, batch_size=32, device="cpu", checkpoint_every=3,
        sample_every=6,
    )  # fmt: skip
    before = train_module.check_compatible

    def as_before_layouts(*args: Any, **kwargs: Any) -> ModelSpec:
        spec: ModelSpec = before(*args, **kwargs)
        return ModelSpec.from_dict(_without_layout(spec))

    with monkeypatch.context() as patched:
        patched.setattr(train_module, "check_compatible", as_before_layouts)
        train(config.replace(steps=3), digits, tmp_path)
    (step, path), *_ = list_checkpoints(tmp_path / "checkpoints")
    payload = read_checkpoint(path)
    del payload["spec"]["dcgan_layout"]  # as written before layouts were numbered
    write_checkpoint(payload, tmp_path / "checkpoints", step, keep=3)

    result = train(config, digits, tmp_path)
    assert result.state.step == 6 and result.state.spec.dcgan_layout == 1
    assert _shapes(result.state.generator_ema) == LAYOUT_1_G[8]

    fresh = train(config, digits, tmp_path / "fresh")
    assert fresh.state.spec.dcgan_layout == 2
    assert _conv3x3_widths(fresh.state.generator_ema) == [(128, 128), (128, 1)]
