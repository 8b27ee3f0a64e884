from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pickle
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import ganserve.gan.metrics as metrics_module
from ganserve.gan.classifier import TrainedClassifier, fit_classifier
from ganserve.gan.config import ModelSpec
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import ConfigError
from ganserve.gan.inception import (
    InceptionExtractor,
    inception_frechet_distance,
    load_inception_extractor,
    prepare,
)
from ganserve.gan.metrics import (
    Evaluator,
    class_coverage,
    conditional_accuracy,
    evaluate,
    frechet_distance,
    kernel_inception_distance,
    sample_images,
)
from ganserve.gan.models import Generator

DIGITS_SPEC = ModelSpec("mlp", channels=1, image_size=8, noise_dim=16, noise_distribution="normal")


class Replay(nn.Module):
    """A 'generator' that returns real images, chosen by the noise: a perfect GAN."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("images", images.float() / 127.5 - 1.0)  # (M, C, H, W)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        rows = (z[:, 0].abs() * 1e4).long() % len(self.images)
        return self.images[rows]


class UniformNoise(nn.Module):
    """A 'generator' whose images are uniform noise in [-1, 1]."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        rng = torch.Generator().manual_seed(int(z[0, 0].abs() * 1e6))
        return torch.rand(len(z), 1, 8, 8, generator=rng) * 2 - 1


def as_generator(module: nn.Module) -> Generator:
    """Stand-ins take (z, labels) like a Generator and carry a spec, as samplers read it."""
    if not hasattr(module, "spec"):
        module.spec = DIGITS_SPEC
    return cast(Generator, module)


@pytest.fixture(scope="module")
def clf(digits: ImageDataset) -> TrainedClassifier:
    torch.set_num_threads(1)
    return fit_classifier(digits, steps=100)


@pytest.fixture(scope="module")
def splits(digits: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
    return digits.split(0.2, 0)


# ----------------------------------------------------------------------------- Fréchet distance


def _exact_gaussian_sample(
    n: int, mean: torch.Tensor, root: torch.Tensor, seed: int
) -> torch.Tensor:
    """(n, F) points whose sample mean is `mean` and sample covariance is rootᵀ root, exactly."""
    z = torch.randn(
        n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    z = z - z.mean(dim=0)
    values, vectors = torch.linalg.eigh(torch.cov(z.T))
    white = z @ vectors @ torch.diag(values.rsqrt()) @ vectors.T  # covariance exactly I
    return white @ root + mean


def _numpy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with Tr((Sa Sb)^½) from the eigenvalues of the product (no scipy)."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b)
    trace_root = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def test_frechet_distance_of_identical_sets_is_zero() -> None:
    feats = torch.randn(300, 32, generator=torch.Generator().manual_seed(0)).relu()
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians() -> None:
    mu_a, mu_b = torch.tensor([0.0, 1.0, -2.0, 0.5]), torch.tensor([1.0, 1.0, 0.0, -0.5])
    sigma_a, sigma_b = torch.tensor([1.0, 2.0, 0.5, 3.0]), torch.tensor([2.0, 0.5, 0.5, 1.0])
    a = _exact_gaussian_sample(400, mu_a.double(), torch.diag(sigma_a).double(), seed=1)
    b = _exact_gaussian_sample(300, mu_b.double(), torch.diag(sigma_b).double(), seed=2)
    expected = float((mu_a - mu_b).square().sum() + (sigma_a - sigma_b).square().sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)  # 6 + 7.25


def test_frechet_distance_matches_a_numpy_reference_for_correlated_features() -> None:
    rng = torch.Generator().manual_seed(3)
    a = torch.randn(500, 12, generator=rng) @ torch.randn(12, 12, generator=rng)
    b = torch.randn(400, 12, generator=rng) @ torch.randn(12, 12, generator=rng) + 0.7
    assert frechet_distance(a, b) == pytest.approx(_numpy_frechet(a.numpy(), b.numpy()), rel=1e-7)


def test_frechet_distance_survives_singular_covariances() -> None:
    # 64 features from 10 samples: rank-deficient covariances, as with few samples
    feats = torch.randn(10, 64, generator=torch.Generator().manual_seed(4)).relu()
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(frechet_distance(feats, feats + 1.0))
    with pytest.raises(ConfigError, match="feature widths differ"):
        frechet_distance(feats, feats[:, :3])


# ----------------------------------------------------------------------------- KID


def _numpy_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], len(x)
    k_xx, k_yy, k_xy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    return float(
        (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        - 2 * k_xy.sum() / m**2
    )


def test_kid_is_near_zero_for_identical_sets_and_positive_for_shifted_ones() -> None:
    feats = torch.randn(600, 16, generator=torch.Generator().manual_seed(5)).relu()
    same, same_std = kernel_inception_distance(feats, feats, subsets=50, subset_size=200)
    shifted, _ = kernel_inception_distance(feats, feats + 0.5, subsets=50, subset_size=200)
    assert shifted > 0.1
    assert abs(same) < 0.01 * shifted and abs(same) < 3 * same_std


def test_kid_with_whole_sets_equals_the_unbiased_estimator() -> None:
    rng = torch.Generator().manual_seed(6)
    x, y = torch.randn(80, 8, generator=rng), torch.randn(80, 8, generator=rng) + 0.3
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=1000)  # capped at 80
    expected = _numpy_unbiased_mmd2(x.double().numpy(), y.double().numpy())
    assert mean == pytest.approx(expected, rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_gives_the_same_value_with_and_without_precomputed_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = torch.Generator().manual_seed(7)
    a, b = torch.randn(300, 16, generator=rng).relu(), torch.randn(200, 16, generator=rng).relu()
    whole = kernel_inception_distance(a, b + 0.1, subsets=10, subset_size=100, seed=3)
    monkeypatch.setattr(metrics_module, "KID_FULL_KERNEL_ROWS", 0)
    per_subset = kernel_inception_distance(a, b + 0.1, subsets=10, subset_size=100, seed=3)
    assert whole == pytest.approx(per_subset, rel=1e-9)


# ----------------------------------------------------------------------------- classes


def test_class_coverage_counts_fair_shares_and_kl_from_uniform() -> None:
    balanced = class_coverage(torch.arange(100) % 4, 4)
    assert balanced.covered == 4 and balanced.kl_from_uniform == pytest.approx(0.0, abs=1e-8)
    assert balanced.histogram == [0.25] * 4
    one = class_coverage(torch.full((50,), 2), 4)
    assert one.covered == 1 and one.kl_from_uniform == pytest.approx(math.log(4), rel=1e-6)
    # fair share 0.5 of 100/4 = 12.5 samples: 12 is not enough, 13 is
    skewed = class_coverage(torch.tensor([0] * 62 + [1] * 13 + [2] * 12 + [3] * 13), 4)
    assert skewed.covered == 3
    with pytest.raises(ConfigError, match="0..3"):
        class_coverage(torch.tensor([0, 4]), 4)


def test_conditional_accuracy() -> None:
    assert conditional_accuracy(torch.tensor([1, 2, 3, 3]), torch.tensor([1, 2, 0, 3])) == 0.75
    with pytest.raises(ConfigError):
        conditional_accuracy(torch.tensor([1, 2]), torch.tensor([1]))


# ----------------------------------------------------------------------------- real digits


def test_held_out_digits_are_near_the_training_split_and_noise_is_far(
    clf: TrainedClassifier, splits: tuple[ImageDataset, ImageDataset]
) -> None:
    train, held_out = splits
    f_train, _ = clf.embed(train.images)
    f_held, p_held = clf.embed(held_out.images)
    noise = torch.randint(0, 256, (1000, 1, 8, 8), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)  # fmt: skip
    f_noise, _ = clf.embed(noise)
    real_fd, noise_fd = frechet_distance(f_train, f_held), frechet_distance(f_noise, f_held)
    assert real_fd < 0.1 * noise_fd
    coverage = class_coverage(p_held, 10)
    assert coverage.covered == 10 and coverage.kl_from_uniform < 0.01


def test_evaluator_scores_a_perfect_generator_far_better_than_noise(
    clf: TrainedClassifier, splits: tuple[ImageDataset, ImageDataset]
) -> None:
    train, held_out = splits
    evaluator = Evaluator(clf, held_out.images, samples=500, seed=1)
    perfect = evaluator.evaluate(as_generator(Replay(train.images)), DIGITS_SPEC)
    noise = evaluator.evaluate(as_generator(UniformNoise()), DIGITS_SPEC)
    assert perfect.frechet_distance < 0.1 * noise.frechet_distance
    assert perfect.kid < 0.1 * noise.kid
    assert perfect.coverage == 10 and perfect.kl_uniform < 0.02
    assert perfect.conditional_accuracy is None and "cond_acc" not in perfect.as_metrics()
    assert perfect.num_samples == 500 and perfect.num_real == len(held_out)
    assert perfect.extractor == clf.identity and perfect.seconds > 0


def test_evaluation_is_deterministic_for_a_seed(
    clf: TrainedClassifier, splits: tuple[ImageDataset, ImageDataset]
) -> None:
    torch.manual_seed(0)
    spec = ModelSpec("dcgan", 1, 8, 16, "normal", num_classes=10, dcgan_width=8)
    generator = Generator(spec)  # untrained, conditional, in training mode
    held_out = splits[1].images
    first = evaluate(generator, spec, clf, held_out, samples=300, seed=7)
    second = evaluate(generator, spec, clf, held_out, samples=300, seed=7)
    other = evaluate(generator, spec, clf, held_out, samples=300, seed=8)
    assert generator.training  # evaluated in eval mode, its mode restored
    assert dataclasses.replace(first, seconds=0) == dataclasses.replace(second, seconds=0)
    assert other.frechet_distance != first.frechet_distance
    assert first.conditional_accuracy is not None and 0 <= first.conditional_accuracy <= 1
    metrics = first.as_metrics()
    per_class = {f"class_{m}.{k}" for m in ("fd", "div", "recall", "acc") for k in range(10)}
    assert set(metrics) == per_class | {
        "fd", "kid", "kid_std", "coverage", "kl_uniform", "cond_acc", "unrecognised",
        "eval_seconds", "class_div_min", "class_recall_min", "class_acc_min",
    }  # fmt: skip
    assert [q.samples for q in first.per_class] == [30] * 10
    assert first.provenance() == {
        "extractor": clf.identity,
        "dataset_hash": clf.dataset_hash,
        "num_samples": 300,
        "num_real": len(held_out),
        "seed": 7,
        "classifier_accuracy": clf.accuracy,
        "num_classes": 10,
    }


def test_samples_are_drawn_in_chunks_without_changing_them() -> None:
    torch.manual_seed(0)
    spec = ModelSpec("mlp", 1, 8, 16, "normal", num_classes=3)
    generator = Generator(spec).eval()
    whole, labels = sample_images(generator, spec, 10, seed=2, chunk=256)
    chunked, _ = sample_images(generator, spec, 10, seed=2, chunk=3)
    assert whole.shape == (10, 1, 8, 8) and whole.dtype == torch.uint8
    assert torch.equal(whole, chunked)
    assert labels is not None and labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]


def test_evaluator_refuses_a_generator_of_another_shape(
    clf: TrainedClassifier, splits: tuple[ImageDataset, ImageDataset]
) -> None:
    spec = ModelSpec("mlp", 1, 16, 16, "normal")
    with pytest.raises(ConfigError, match="classifier takes"):
        evaluate(Generator(spec), spec, clf, splits[1].images, samples=10)


# ----------------------------------------------------------------------------- Inception FID


class _Pool(nn.Module):
    """Tiny stand-in for Inception: (N, 3, 299, 299) -> (N, 12) pooled features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 2).flatten(1) / 255.0


class _PoolKeywords(nn.Module):
    """StyleGAN's calling convention: logits unless return_features=True."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        features = F.adaptive_avg_pool2d(x, 2).flatten(1)
        if return_features:
            return features
        return torch.zeros(x.shape[0], 1008)


class _Pool4d(nn.Module):
    """pytorch-fid's pool3 block shape: (N, D, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1)


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _script(module: nn.Module, path: Path) -> Path:
    with pytest.warns(DeprecationWarning):
        torch.jit.script(module).save(str(path))
    return path


def test_prepare_resizes_and_replicates_grey_images() -> None:
    images = torch.full((2, 1, 8, 8), 200, dtype=torch.uint8)
    x = prepare(images)
    assert x.shape == (2, 3, 299, 299) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 200.0))


def test_a_torchscript_extractor_computes_inception_fd(
    tmp_path: Path, splits: tuple[ImageDataset, ImageDataset]
) -> None:
    path = _script(_Pool(), tmp_path / "pool.pt")
    extractor = load_inception_extractor(path)
    assert isinstance(extractor, InceptionExtractor) and extractor.dim == 12
    assert extractor.identity == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    train, held_out = splits
    real = held_out.images[:32]
    perfect_g, noise_g = as_generator(Replay(train.images)), as_generator(UniformNoise())
    perfect = inception_frechet_distance(perfect_g, DIGITS_SPEC, real, extractor, 32, seed=0)
    noisy = inception_frechet_distance(noise_g, DIGITS_SPEC, real, extractor, 32, seed=0)
    assert 0 <= perfect < noisy
    cached = extractor.extract(real)
    again = inception_frechet_distance(
        perfect_g, DIGITS_SPEC, real, extractor, 32, seed=0, real_features=cached
    )
    assert again == perfect


@pytest.mark.parametrize("module", [_PoolKeywords(), _Pool4d()])
def test_stylegan_and_pytorch_fid_calling_conventions_are_understood(
    module: nn.Module, tmp_path: Path
) -> None:
    extractor = load_inception_extractor(_script(module, tmp_path / "x.pt"))
    assert extractor.dim in (12, 3)
    assert extractor(prepare(torch.zeros(3, 1, 8, 8, dtype=torch.uint8))).shape == (
        3,
        extractor.dim,
    )


def test_a_missing_extractor_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inception_weights: no Inception feature extractor"):
        load_inception_extractor(tmp_path / "inception.pt")


def test_a_state_dict_is_not_an_extractor(tmp_path: Path) -> None:
    torch.save(_Pool().state_dict() | {"w": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(ConfigError, match="not a TorchScript module"):
        load_inception_extractor(tmp_path / "weights.pt")


def test_a_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "inception.pkl").write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ConfigError, match="not a TorchScript module"):
        load_inception_extractor(tmp_path / "inception.pkl", setting="GANSERVE_INCEPTION_WEIGHTS")
    assert not marker.exists()


def test_an_extractor_with_the_wrong_output_shape_is_refused(tmp_path: Path) -> None:
    path = _script(_Identity(), tmp_path / "identity.pt")
    with pytest.raises(ConfigError, match=r"maps a \(2, 3, 299, 299\) batch to"):
        load_inception_extractor(path)
