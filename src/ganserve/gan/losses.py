"""GAN losses, chosen by name from LOSSES. All take raw D logits, never probabilities.

- bce: D minimises -log D(x) - log(1 - D(G(z))); G minimises the non-saturating
  -log D(G(z)). Written with softplus, which is BCE-with-logits and stable for any logit.
- wgan-gp: critic minimises D(G(z)) - D(x) + lambda * (||grad D(x_hat)|| - 1)^2 on random
  interpolates x_hat; G minimises -D(G(z)).
- hinge: D minimises relu(1 - D(x)) + relu(1 + D(G(z))); G minimises -D(G(z)).
- lsgan (least squares, Mao et al. 2017; CycleGAN's default): D minimises
  ((D(x) - 1)^2 + D(G(z))^2) / 2; G minimises (D(G(z)) - 1)^2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

MODE_SEEKING_EPS = 1e-5  # keeps the mode-seeking term finite when two images are equal


@dataclass(frozen=True)
class GanLoss:
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real, fake logits) -> scalar
    g_loss: Callable[[torch.Tensor], torch.Tensor]  # fake logits -> scalar
    gradient_penalty: bool = False


def _bce_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # -log(sigmoid(r)) = softplus(-r);  -log(1 - sigmoid(f)) = softplus(f)
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _bce_g(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


def _wasserstein_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return fake.mean() - real.mean()


def _hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def _critic_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def _ls_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # halved, as in CycleGAN: D then learns at half G's pace
    return 0.5 * ((real - 1.0).square().mean() + fake.square().mean())


def _ls_g(fake: torch.Tensor) -> torch.Tensor:
    return (fake - 1.0).square().mean()


LOSSES: dict[str, GanLoss] = {
    "bce": GanLoss(_bce_d, _bce_g),
    "wgan-gp": GanLoss(_wasserstein_d, _critic_g, gradient_penalty=True),
    "hinge": GanLoss(_hinge_d, _critic_g),
    "lsgan": GanLoss(_ls_d, _ls_g),
}


def gradient_penalty(
    critic: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None,
    epsilon: torch.Tensor,
) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2]; epsilon is (B, 1, 1, 1) in [0, 1)."""
    x_hat = (epsilon * real + (1.0 - epsilon) * fake).requires_grad_(True)
    scores = critic(x_hat, labels)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def mode_seeking_loss(
    fake_a: torch.Tensor, fake_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor
) -> torch.Tensor:
    """MSGAN's term (Mao et al. 2019): 1 / (mean |G(z_a) - G(z_b)| / mean |z_a - z_b|).

    (B, C, H, W) images of the same classes from (B, Z) noise z_a and z_b; small when two
    noise vectors give different images, large when G maps them to the same picture.
    """
    images = (fake_a - fake_b).abs().flatten(1).mean(dim=1)  # (B,)
    noise = (z_a - z_b).abs().mean(dim=1)  # (B,)
    return 1.0 / ((images / noise).mean() + MODE_SEEKING_EPS)
