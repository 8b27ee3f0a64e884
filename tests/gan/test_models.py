from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ganserve.gan.config import DCGAN_IMAGE_SIZES, ModelSpec
from ganserve.gan.losses import LOSSES, gradient_penalty
from ganserve.gan.models import ClassSpread, Discriminator, build_models

CASES = list(
    itertools.product(["mlp", "dcgan"], DCGAN_IMAGE_SIZES, [1, 3], [False, True], sorted(LOSSES))
)


@pytest.mark.parametrize(("architecture", "size", "channels", "conditional", "loss"), CASES)
def test_shapes_for_every_architecture_loss_and_image_shape(
    architecture: str, size: int, channels: int, conditional: bool, loss: str
) -> None:
    spec = ModelSpec(architecture, channels, size, 16, "normal", 10 if conditional else 0, 8)
    g, d = build_models(spec)
    z = torch.randn(3, 16)
    labels = torch.tensor([0, 4, 9]) if conditional else None
    images = g(z, labels)
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # tanh output
    logits = d(images, labels)
    assert logits.shape == (3,)
    gan_loss = LOSSES[loss]
    d_loss = gan_loss.d_loss(d(torch.rand_like(images) * 2 - 1, labels), logits)
    if gan_loss.gradient_penalty:
        eps = torch.rand(3, 1, 1, 1)
        d_loss = d_loss + 10 * gradient_penalty(d, images.detach(), images.detach(), labels, eps)
    if conditional:  # the auxiliary classifier (AC-GAN's class loss)
        _, class_logits = d(images.detach(), labels, with_classes=True)
        assert class_logits.shape == (3, 10)
        d_loss = d_loss + nn.functional.cross_entropy(class_logits, labels)
    else:
        with pytest.raises(ValueError, match="no class logits"):
            d(images, labels, with_classes=True)
    d_loss.backward()
    assert d_loss.ndim == 0 and torch.isfinite(d_loss)
    assert all(p.grad is not None for p in d.parameters())


def test_mlp_is_the_reference_model() -> None:
    g, d = build_models(ModelSpec("mlp", 1, 28, 100, "normal"))
    g_linear = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in g_linear] == [
        (100, 256), (256, 512), (512, 1024), (1024, 784),
    ]  # fmt: skip
    norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [256, 512, 1024]
    assert all(m.momentum == pytest.approx(0.2) for m in norms)  # Keras momentum 0.8
    leaky = [m for m in g.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 3 and all(m.negative_slope == 0.2 for m in leaky)
    assert isinstance(list(g.modules())[-1], nn.Tanh)
    d_linear = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in d_linear] == [(784, 512), (512, 256), (256, 1)]
    assert not any(isinstance(m, nn.BatchNorm1d | nn.Sigmoid) for m in d.modules())


def test_conditional_generator_output_depends_on_label() -> None:
    g, _ = build_models(ModelSpec("mlp", 1, 8, 8, "normal", num_classes=10))
    g.eval()
    z = torch.randn(1, 8).repeat(2, 1)
    out = g(z, torch.tensor([1, 2]))
    assert not torch.equal(out[0], out[1])


def test_conditional_models_refuse_missing_labels() -> None:
    g, d = build_models(ModelSpec("dcgan", 1, 8, 8, "normal", num_classes=3, dcgan_width=4))
    with pytest.raises(ValueError, match="needs labels"):
        g(torch.randn(2, 8))
    with pytest.raises(ValueError, match="needs labels"):
        d(torch.randn(2, 1, 8, 8))


def test_class_spread_sees_copies_inside_a_class() -> None:
    spread = ClassSpread(num_classes=3)
    labels = torch.tensor([0, 0, 1, 1, 2])  # class 2 appears once: its spread is undefined
    varied = torch.tensor([[0.0, 0.0], [2.0, 2.0], [1.0, 1.0], [1.0, 3.0], [9.0, 9.0]])
    out = spread(varied, labels)  # (5, 3)
    assert torch.equal(out[:, :2], varied)
    # class 0: std 1.414 in both features; class 1: std 0 and 1.414 -> (1.414 + 0.707) / 2
    assert torch.allclose(out[:, 2], torch.full((5,), (2**0.5 + 2**0.5 / 2) / 2), atol=1e-4)
    copies = torch.tensor([[1.0, 2.0], [1.0, 2.0], [5.0, 5.0], [5.0, 5.0], [0.0, 7.0]])
    assert float(spread(copies, labels)[0, 2]) < 1e-3  # the same picture for every seed
    alone = spread(varied[:3], torch.tensor([0, 1, 2]))  # no class twice: 0, not NaN
    assert torch.equal(alone[:, 2], torch.zeros(3))


def test_a_conditional_discriminator_feeds_the_class_spread_to_its_head() -> None:
    spec = ModelSpec("mlp", 1, 8, 16, "normal", num_classes=10)
    d = Discriminator(spec)
    assert d.spread is not None and d.head.linear.in_features == 256 + 1
    assert d.head.embed is not None and float(d.head.embed.weight.detach().abs().sum()) == 0.0
    assert Discriminator(ModelSpec("mlp", 1, 8, 16, "normal")).spread is None


@pytest.mark.parametrize(
    ("architecture", "size", "conditional", "layout"),
    [
        ("mlp", 8, False, 2),
        ("mlp", 28, True, 2),
        ("dcgan", 8, True, 2),
        ("dcgan", 16, False, 1),
        ("dcgan", 28, True, 1),
    ],  # fmt: skip
)
def test_the_unhooked_forward_computes_the_forwards_bits(
    architecture: str, size: int, conditional: bool, layout: int
) -> None:
    spec = ModelSpec(
        architecture, 1, size, 16, "normal", 10 if conditional else 0, 8, dcgan_layout=layout
    )
    g, _ = build_models(spec)
    g.eval()
    for rows in (1, 4, 16):
        z = torch.randn(rows, 16)
        labels = torch.arange(rows) % 10 if conditional else None
        with torch.inference_mode():
            assert torch.equal(g.forward_unhooked(z, labels), g(z, labels))
    if conditional:
        with pytest.raises(ValueError, match="needs labels"):
            g.forward_unhooked(torch.randn(2, 16))
