from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from ganserve.gan.losses import LOSSES, gradient_penalty


def test_bce_matches_the_reference_definitions() -> None:
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.0, 1.0])
    expected_d = F.binary_cross_entropy(
        torch.sigmoid(real), torch.ones(3)
    ) + F.binary_cross_entropy(torch.sigmoid(fake), torch.zeros(3))
    expected_g = -torch.log(torch.sigmoid(fake)).mean()  # non-saturating -log D(G(z))
    assert torch.allclose(LOSSES["bce"].d_loss(real, fake), expected_d, atol=1e-6)
    assert torch.allclose(LOSSES["bce"].g_loss(fake), expected_g, atol=1e-6)


def test_bce_is_finite_for_extreme_logits() -> None:
    real, fake = torch.tensor([-200.0, 200.0]), torch.tensor([200.0, -200.0])
    assert torch.isfinite(LOSSES["bce"].d_loss(real, fake))
    assert torch.isfinite(LOSSES["bce"].g_loss(fake))
    assert LOSSES["bce"].d_loss(real, fake).item() > 100  # confidently wrong costs a lot


def test_hinge_and_wasserstein_values() -> None:
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    assert LOSSES["hinge"].d_loss(real, fake).item() == (0 + 1) / 2 + (0 + 1.5) / 2
    assert LOSSES["hinge"].g_loss(fake).item() == 0.75
    assert LOSSES["wgan-gp"].d_loss(real, fake).item() == -0.75 - 1.0
    assert LOSSES["wgan-gp"].gradient_penalty and not LOSSES["bce"].gradient_penalty


def test_gradient_penalty_of_a_linear_critic() -> None:
    w = torch.full((1, 2, 2), 0.5)  # ||w|| = 1.0 -> penalty 0; scaled by 3 -> (3 - 1)^2 = 4

    def critic(scale: float):  # type: ignore[no-untyped-def]
        return lambda x, labels: (x * w * scale).flatten(1).sum(1)

    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    eps = torch.rand(4, 1, 1, 1)
    assert gradient_penalty(critic(1.0), real, fake, None, eps).item() < 1e-10
    assert abs(gradient_penalty(critic(3.0), real, fake, None, eps).item() - 4.0) < 1e-5
