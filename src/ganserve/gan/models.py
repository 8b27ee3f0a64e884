"""Generators and discriminators, read top to bottom: small blocks first, whole networks last.

Both architectures take (z, labels) in G and (x, labels) in D; labels are None for
unconditional models. Conditioning (cGAN):
- G: a learned class embedding (noise_dim wide) is concatenated to z.
- D: projection discriminator (Miyato & Koyama 2018): logit = linear(h) + <embed(y), h>,
  where h is D's last hidden feature vector. It needs no extra input channels and trains
  more stably than concatenation. Before the head, h gets one more feature: its batch's
  spread within classes (ClassSpread), so D can tell a batch of copies from real variety.
  D also has an auxiliary classifier on h (AC-GAN, Odena et al. 2017) that the training
  loop uses with the weight `class_loss` (gan/train.py).
D returns raw logits (B,); the sigmoid of the reference model lives in the BCE loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganserve.gan.config import ModelSpec

LEAK = 0.2
KERAS_BN_MOMENTUM = 0.2  # Keras momentum 0.8 == PyTorch momentum 0.2
KERAS_BN_EPS = 1e-3  # Keras' BatchNormalization default epsilon
MAX_WIDTH_FACTOR = 8  # dcgan layout 2: no G layer wider than layout 1's widest (64 px: 8 x width)
LABEL_EMBED_SCALE = 0.1  # G's class embedding starts as N(0, 1) times this (LabelConcat)


# ----------------------------------------------------------------------------- blocks


class LabelConcat(nn.Module):
    """(B, noise_dim) z and (B,) labels -> (B, 2 * noise_dim) input of a conditional G.

    The class embedding starts at a tenth of z's scale (issue 13): with nn.Embedding's
    N(0, 1) rows the label is as loud as z from the first step, and the reference MLP G
    dropped z altogether within a few hundred steps (per-pixel std across seeds 0.015 after
    400 steps, the unconditional G's 0.43; D winning with D(G(z)) = 0.004). Starting quiet, G
    first learns digits from z, then the classes: at 1,000 steps on digits, classes
    recognised 97-100% and within-class spread 0.44-1.04 of the real class's, FD 6.8
    (N(0, 1) rows, same D: 2 of 10 classes recognisable, FD 169).
    """

    def __init__(self, num_classes: int, noise_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, noise_dim)
        with torch.no_grad():
            self.embed.weight.mul_(LABEL_EMBED_SCALE)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, self.embed(labels)], dim=1)


class ProjectionHead(nn.Module):
    """(B, F) features [+ (B,) labels] -> (B,) logits; projection term when conditional.

    The class embedding starts at zero (issue 13). nn.Embedding's default N(0, 1) rows make
    <embed(y), h> about sqrt(F) times larger than the unconditional logit at the start, so D
    first learns "which class" and G answers each class with the one picture that maximises
    that inner product: measured on digits (dcgan, 2,000 steps), within-class feature spread
    0.24 of the real class's and FD 26.9 with N(0, 1) rows; 0.49 and 6.5 with zero rows.
    """

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features) if num_classes > 0 else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        logits = self.linear(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            logits = logits + (self.embed(labels) * h).sum(dim=1)
        return logits


class ClassSpread(nn.Module):
    """(B, F) features + (B,) labels -> (B, F + 1): every row gets its batch's class spread.

    The spread is the mean over features of the standard deviation of h within each class,
    averaged over the classes present at least twice in the batch: the minibatch standard
    deviation of ProGAN (Karras et al. 2018), taken inside classes, since across classes a
    cGAN's copies still differ. Without it a per-sample D cannot see that every sample of a
    class is the same picture (issue 13). Measured on digits, dcgan at 2,000 steps with the
    zero-initialised projection: within-class feature spread 0.49 -> 0.77 of the real
    class's (worst class 0.65), FD 6.5 -> 3.5.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(labels, self.num_classes).to(h.dtype)  # (B, K)
        counts = onehot.sum(dim=0)  # (K,)
        means = onehot.T @ h / counts.clamp(min=1.0)[:, None]  # (K, F)
        deviations = h - onehot @ means  # (B, F)
        variances = onehot.T @ deviations.square() / (counts - 1.0).clamp(min=1.0)[:, None]
        present = (counts >= 2).to(h.dtype)  # (K,): classes whose spread is defined
        per_class = (variances + 1e-8).sqrt().mean(dim=1)  # (K,)
        spread = (per_class * present).sum() / present.sum().clamp(min=1.0)  # ()
        return torch.cat([h, spread.expand(h.shape[0], 1)], dim=1)


def _mlp_g_block(fan_in: int, fan_out: int) -> list[nn.Module]:
    # Keras order of the reference model: Dense -> LeakyReLU -> BatchNorm
    return [
        nn.Linear(fan_in, fan_out),
        nn.LeakyReLU(LEAK),
        nn.BatchNorm1d(fan_out, momentum=KERAS_BN_MOMENTUM, eps=KERAS_BN_EPS),
    ]


def _up_block(c_in: int, c_out: int) -> list[nn.Module]:
    # (B, c_in, s, s) -> (B, c_out, 2s, 2s)
    return [
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _down_block(c_in: int, c_out: int) -> list[nn.Module]:
    # (B, c_in, 2s, 2s) -> (B, c_out, s, s); no BatchNorm in D, so the WGAN-GP penalty is valid
    return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(LEAK, inplace=True)]


def _dcgan_plan(image_size: int) -> tuple[int, int]:
    """(seed size, number of doublings): 32 -> (4, 3), 28 -> (7, 2), 8 -> (4, 1)."""
    for seed in (4, 7):
        doublings = math.log2(image_size / seed)
        if doublings >= 1 and doublings.is_integer():
            return seed, int(doublings)
    raise ValueError(f"dcgan cannot build {image_size} px images")


def _same_size_block(width: int, batch_norm: bool) -> list[nn.Module]:
    # (B, width, s, s) -> (B, width, s, s): layout 2's extra layer at every resolution
    if batch_norm:
        return [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                nn.ReLU(inplace=True)]  # fmt: skip
    return [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(LEAK, inplace=True)]


def _dcgan_generator(spec: ModelSpec, fan_in: int) -> nn.Sequential:
    """(B, fan_in) -> (B, C, H, W) in [-1, 1]; the layers depend on `spec.dcgan_layout`.

    Layout 1: z -> seed x seed -> doublings of transposed convs, the last one to C channels.
    Layout 2: the doublings end at 2 x `dcgan_width` channels, each resolution gets one more
    3x3 convolution, and a 3x3 convolution makes the C channels (bench/README.md, issue 13).
    """
    seed, doublings = _dcgan_plan(spec.image_size)
    w, c = spec.dcgan_width, spec.channels
    if spec.dcgan_layout == 1:
        widths = [w * 2 ** (doublings - 1 - i) for i in range(doublings)]
    else:
        # G twice as wide as D at every resolution (measured on digits at 2k steps: FD 4.84
        # against 6.95 at D's widths, 10.5 for a wider but shallower G)
        widths = [
            min(2 * w * 2 ** (doublings - i), MAX_WIDTH_FACTOR * w) for i in range(doublings + 1)
        ]
    layers: list[nn.Module] = [
        nn.Linear(fan_in, widths[0] * seed * seed, bias=False),
        nn.Unflatten(1, (widths[0], seed, seed)),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
    ]
    if spec.dcgan_layout == 1:
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += _up_block(w_in, w_out)
        layers += [nn.ConvTranspose2d(widths[-1], c, 4, stride=2, padding=1), nn.Tanh()]
        return nn.Sequential(*layers)
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        layers += _up_block(w_in, w_out) + _same_size_block(w_out, batch_norm=True)
    layers += [nn.Conv2d(widths[-1], c, 3, padding=1), nn.Tanh()]
    return nn.Sequential(*layers)


def _dcgan_features(spec: ModelSpec) -> tuple[nn.Sequential, int]:
    """(B, C, H, W) -> (B, F) features of D, and F; mirrors `_dcgan_generator`'s layout.

    Layout 1: stride-2 convolutions from C to dcgan_width, doubling. Layout 2: the same
    widths per resolution, after a 3x3 convolution from C to dcgan_width at the input's, and
    each stride-2 convolution followed by a 3x3 one at its resolution. (A D twice as wide at
    each resolution, measured: FD 11.3 and 17.4 at 2k steps on digits; this one, 6.95.)
    """
    seed, doublings = _dcgan_plan(spec.image_size)
    w, c = spec.dcgan_width, spec.channels
    if spec.dcgan_layout == 1:
        widths = [w * 2**i for i in range(doublings)]
        layers: list[nn.Module] = _down_block(c, widths[0])
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += _down_block(w_in, w_out)
    else:
        widths = [w] + [w * 2**i for i in range(doublings)]
        layers = [nn.Conv2d(c, w, 3, padding=1), nn.LeakyReLU(LEAK, inplace=True)]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += _down_block(w_in, w_out) + _same_size_block(w_out, batch_norm=False)
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), widths[-1] * seed * seed


# ----------------------------------------------------------------------------- networks


class Generator(nn.Module):
    """(B, noise_dim) z [+ (B,) labels] -> (B, C, H, W) images in [-1, 1]."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.condition = LabelConcat(spec.num_classes, spec.noise_dim) if spec.conditional else None
        fan_in = spec.noise_dim * (2 if spec.conditional else 1)
        c, s = spec.channels, spec.image_size
        if spec.architecture == "mlp":
            # z -> 256 -> 512 -> 1024 -> C*H*W, the reference model
            self.net: nn.Sequential = nn.Sequential(
                *_mlp_g_block(fan_in, 256),
                *_mlp_g_block(256, 512),
                *_mlp_g_block(512, 1024),
                nn.Linear(1024, c * s * s),
                nn.Tanh(),
            )
        else:
            self.net = _dcgan_generator(spec, fan_in)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.condition is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = self.condition(z, labels)
        out: torch.Tensor = self.net(z)
        return out.view(z.shape[0], *self.spec.image_shape)

    def forward_unhooked(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """`forward`, calling each layer's own forward: no module hooks run (for sampling).

        nn.Module's call machinery costs a few us per layer; a 4-row pass of the reference
        MLP (13 modules) takes 60 us less this way (bench/README.md). Same operations, same
        bits (tests/gan/test_models.py).
        """
        if self.condition is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = self.condition.forward(z, labels)
        out = z
        for layer in self.net:  # a Sequential of leaf layers, for both architectures
            out = layer.forward(out)
        return out.view(z.shape[0], *self.spec.image_shape)


class Discriminator(nn.Module):
    """(B, C, H, W) images [+ (B,) labels] -> (B,) logits (real > 0 > fake for BCE)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        c, s = spec.channels, spec.image_size
        if spec.architecture == "mlp":
            # C*H*W -> 512 -> 256 -> 1, the reference model
            self.features: nn.Module = nn.Sequential(
                nn.Flatten(),
                nn.Linear(c * s * s, 512),
                nn.LeakyReLU(LEAK),
                nn.Linear(512, 256),
                nn.LeakyReLU(LEAK),
            )
            feature_dim = 256
        else:
            self.features, feature_dim = _dcgan_features(spec)
        self.spread = ClassSpread(spec.num_classes) if spec.conditional else None
        extra = 1 if self.spread is not None else 0  # the spread feature
        self.head = ProjectionHead(feature_dim + extra, spec.num_classes)
        # AC-GAN's auxiliary classifier (conditional only; built last, so the other layers'
        # initial weights are what they were without it)
        self.classes = nn.Linear(feature_dim, spec.num_classes) if spec.conditional else None

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, with_classes: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B,) logits; with_classes: also (B, K) class logits of the auxiliary classifier."""
        h = self.features(x)  # (B, F)
        class_logits = self.classes(h) if with_classes and self.classes is not None else None
        if self.spread is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            h = self.spread(h, labels)  # (B, F + 1)
        logits: torch.Tensor = self.head(h, labels)
        if with_classes:
            if class_logits is None:
                raise ValueError("an unconditional discriminator has no class logits")
            return logits, class_logits
        return logits


def build_models(spec: ModelSpec) -> tuple[Generator, Discriminator]:
    return Generator(spec), Discriminator(spec)
