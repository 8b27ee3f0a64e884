"""CycleGAN networks, read top to bottom: blocks first, whole networks last.

- Generator: the ResNet generator of Johnson et al. 2016 as CycleGAN uses it:
  c7s1-w, `downsamplings` stride-2 convolutions (w -> 2w -> 4w), `blocks` residual blocks,
  the same number of stride-2 transposed convolutions, c7s1-C, tanh. Instance norm (no
  running statistics, so train and eval mode compute the same thing) and reflection padding.
  Fully convolutional: any H, W that are multiples of `stride` (= 2 ** downsamplings) and at
  least 2 * stride work; `translate` pads other sizes.
- Discriminator: PatchGAN (Isola et al. 2017): `d_layers` stride-2 4x4 convolutions, one
  stride-1 4x4 convolution and a 1-channel 4x4 convolution; one raw logit per overlapping
  patch. Its receptive field is 16 px for 1 layer, 34 px for 2, 70 px for 3 (the paper's).
  No normalization on the first layer; instance norm after.

`plan_for(image_size)` scales the paper's networks (64 channels, 9 blocks at 256 px) down to
small images, where a CPU must train them: 2 downsamplings from 16 px up (1 below); 3
residual blocks up to 32 px, 6 up to 128 px, 9 above; first-layer widths G/D of 16/32 up to
32 px, 32/64 up to 128 px, 64/64 above; a PatchGAN whose patch is about the image size up
to the paper's 70 px.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganserve.gan.config import spec_from_dict, spec_to_dict
from ganserve.gan.errors import ConfigError

LEAK = 0.2
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 256  # square training images of the two domains
MAX_WIDTH, MAX_BLOCKS = 256, 12


@dataclass(frozen=True)
class Plan:
    downsamplings: int
    blocks: int
    width: int  # G's first-layer channels
    d_width: int  # D's first-layer channels
    d_layers: int


def plan_for(image_size: int) -> Plan:
    """The network sizes for square images of image_size px (see the module docstring)."""
    small, medium = image_size <= 32, image_size <= 128
    return Plan(
        downsamplings=2 if image_size >= 16 else 1,
        blocks=3 if small else 6 if medium else 9,
        width=16 if small else 32 if medium else 64,
        d_width=32 if small else 64,
        d_layers=1 if image_size < 32 else 2 if image_size < 70 else 3,
    )


@dataclass(frozen=True)
class TranslatorSpec:
    """What rebuilds both generators (and discriminators): stored in checkpoints and exports."""

    channels: int  # C of both domains' (C, H, W) images (reconciled, see pairs.py)
    image_size: int  # H == W of the training images; translation works at other sizes too
    width: int = 16  # channels of the generator's first convolution (the paper: 64)
    blocks: int = 3  # residual blocks at the bottleneck
    downsamplings: int = 2  # stride-2 convolutions in G: its stride is 2 ** downsamplings
    d_width: int = 32  # channels of the discriminator's first convolution
    d_layers: int = 2  # stride-2 convolutions in D (patch size: 16, 34, 70 px for 1, 2, 3)
    domain_a: str = "a"  # dataset names, for people reading the description
    domain_b: str = "b"
    class_names: tuple[str, ...] = field(default=())  # shared labels, when both domains have them

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("channels", self.channels, 1, 3),
            ("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
            ("width", self.width, 4, MAX_WIDTH),
            ("blocks", self.blocks, 0, MAX_BLOCKS),
            ("downsamplings", self.downsamplings, 1, 3),
            ("d_width", self.d_width, 4, MAX_WIDTH),
            ("d_layers", self.d_layers, 1, 4),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    name, f"must be an integer between {low} and {high}, got {value!r}"
                )
        if self.image_size < 2 * self.stride:
            raise ConfigError(
                "image_size", f"must be at least {2 * self.stride} px for {self.downsamplings} "
                "downsamplings",
            )  # fmt: skip

    @property
    def stride(self) -> int:
        """Input sizes must be multiples of this (translate pads other sizes)."""
        return 2**self.downsamplings

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return spec_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranslatorSpec:
        result: TranslatorSpec = spec_from_dict(cls, data)
        return result


# ----------------------------------------------------------------------------- blocks


def _norm(channels: int) -> nn.Module:
    # per-image statistics, nothing tracked: eval == train, any spatial size >= 2 px
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """(B, c, h, w) -> (B, c, h, w): x + conv-norm-relu-conv-norm(x), reflection padded."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.body(x)
        return out


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    # (B, c_in, h, w) -> (B, c_out, h/2, w/2)
    return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), _norm(c_out), nn.ReLU(True)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    # (B, c_in, h, w) -> (B, c_out, 2h, 2w)
    return [
        nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=False),
        _norm(c_out),
        nn.ReLU(True),
    ]


# ----------------------------------------------------------------------------- networks


class ResnetGenerator(nn.Module):
    """(B, C, H, W) images in [-1, 1] -> (B, C, H, W) images of the other domain in [-1, 1].

    H and W must be multiples of spec.stride, at least 2 * stride (see translate.translate).
    """

    def __init__(self, spec: TranslatorSpec) -> None:
        super().__init__()
        self.spec = spec
        c, w = spec.channels, spec.width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(c, w, 7, bias=False),  # (B, C, H, W) -> (B, w, H, W)
            _norm(w),
            nn.ReLU(True),
        ]
        for i in range(spec.downsamplings):  # -> (B, w * 2^d, H / 2^d, W / 2^d)
            layers += _down(w * 2**i, w * 2 ** (i + 1))
        bottleneck = w * 2**spec.downsamplings
        layers += [ResidualBlock(bottleneck) for _ in range(spec.blocks)]
        for i in reversed(range(spec.downsamplings)):  # -> (B, w, H, W)
            layers += _up(w * 2 ** (i + 1), w * 2**i)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, c, 7), nn.Tanh()]  # -> (B, C, H, W)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class PatchDiscriminator(nn.Module):
    """(B, C, H, W) images -> (B, 1, h, w) raw logits, one per overlapping patch.

    For 32 px and d_layers=2: 32 -> 16 -> 8 -> 7 -> (B, 1, 6, 6). `labels` is accepted and
    ignored, so the engine's gradient penalty can call it like any discriminator.
    """

    def __init__(self, spec: TranslatorSpec) -> None:
        super().__init__()
        w = spec.d_width
        layers: list[nn.Module] = [
            nn.Conv2d(spec.channels, w, 4, stride=2, padding=1),  # no norm on the first layer
            nn.LeakyReLU(LEAK, True),
        ]
        for i in range(1, spec.d_layers):  # (B, w*2^(i-1), h, w) -> (B, w*2^i, h/2, w/2)
            c_in, c_out = w * 2 ** (i - 1), w * min(2**i, 8)
            layers += [
                nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                _norm(c_out),
                nn.LeakyReLU(LEAK, True),
            ]
        c_in = w * min(2 ** (spec.d_layers - 1), 8)
        c_out = w * min(2**spec.d_layers, 8)
        layers += [
            nn.Conv2d(c_in, c_out, 4, stride=1, padding=1, bias=False),  # h -> h - 1
            _norm(c_out),
            nn.LeakyReLU(LEAK, True),
            nn.Conv2d(c_out, 1, 4, stride=1, padding=1),  # h - 1 -> h - 2, one logit per patch
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: conv weights from N(0, 0.02), biases zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_translators(
    spec: TranslatorSpec,
) -> tuple[ResnetGenerator, ResnetGenerator, PatchDiscriminator, PatchDiscriminator]:
    """(G: A -> B, F: B -> A, D_A, D_B), initialised from torch's global RNG (seed it first)."""
    nets = (ResnetGenerator(spec), ResnetGenerator(spec), PatchDiscriminator(spec),
            PatchDiscriminator(spec))  # fmt: skip
    for net in nets:
        init_weights(net)
    return nets
