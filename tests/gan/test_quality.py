from __future__ import annotations

import json
import math
from typing import cast

import pytest
import torch
from torch import nn

from ganserve.gan.classifier import TrainedClassifier, fit_classifier
from ganserve.gan.config import ModelSpec
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import ConfigError
from ganserve.gan.metrics import Evaluator, QualityReport
from ganserve.gan.models import Generator
from ganserve.gan.quality import DIVERGENCE, MODE_COLLAPSE, BestEvaluation, QualityMonitor

UNCONDITIONAL = ModelSpec("mlp", 1, 8, 16, "normal")
CONDITIONAL = ModelSpec("mlp", 1, 8, 16, "normal", num_classes=10)


class FromRealImages(nn.Module):
    """A 'generator' that returns real digits chosen by the noise.

    With `per_class` it honours the requested labels (a perfect cGAN); with one class's images
    only, it is a generator collapsed onto that class whatever it is asked for.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, per_class: bool) -> None:
        super().__init__()
        self.register_buffer("images", images.float() / 127.5 - 1.0)  # (M, 1, 8, 8)
        self.register_buffer("labels", labels)  # (M,)
        self.per_class = per_class

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        pick = (z[:, 0].abs() * 1e4).long()  # (B,)
        if not self.per_class or labels is None:
            return self.images[pick % len(self.images)]
        rows = [
            torch.nonzero(self.labels == int(k)).flatten()[int(p) % int((self.labels == k).sum())]
            for k, p in zip(labels, pick, strict=True)
        ]
        return self.images[torch.stack(rows)]


def one_class(dataset: ImageDataset, label: int) -> Generator:
    members = dataset.labels == label
    module = FromRealImages(dataset.images[members], dataset.labels[members], per_class=False)
    return cast(Generator, module)


def report(fd: float, coverage: int = 10) -> QualityReport:
    return QualityReport(
        frechet_distance=fd,
        kid=0.0,
        kid_std=0.0,
        coverage=coverage,
        num_classes=10,
        kl_uniform=0.0,
        conditional_accuracy=None,
        num_samples=100,
        num_real=100,
        seed=0,
        extractor="0" * 16,
        dataset_hash="0" * 64,
        classifier_accuracy=1.0,
        seconds=0.1,
    )


@pytest.fixture(scope="module")
def clf(digits: ImageDataset) -> TrainedClassifier:
    torch.set_num_threads(1)
    return fit_classifier(digits, steps=100)


@pytest.fixture(scope="module")
def evaluator(clf: TrainedClassifier, digits: ImageDataset) -> Evaluator:
    return Evaluator(clf, clf.held_out(digits).images, samples=400, seed=0)


# ----------------------------------------------------------------------------- mode collapse


def test_a_one_class_generator_reads_coverage_one_and_trips_the_alarm(
    evaluator: Evaluator, digits: ImageDataset
) -> None:
    train, _ = digits.split(0.2, 0)
    result = evaluator.evaluate(one_class(train, 3), UNCONDITIONAL)
    assert result.coverage == 1
    assert result.histogram[3] > 0.9
    assert result.kl_uniform == pytest.approx(math.log(10), rel=0.1)
    warnings = QualityMonitor(coverage_threshold=0.8).observe(500, result)
    assert [w.kind for w in warnings] == [MODE_COLLAPSE]
    assert "step 500" in warnings[0].message and "1 of 10 classes" in warnings[0].message


def test_a_generator_of_all_classes_raises_no_alarm(
    evaluator: Evaluator, digits: ImageDataset
) -> None:
    train, _ = digits.split(0.2, 0)
    generator = FromRealImages(train.images, train.labels, per_class=False)
    result = evaluator.evaluate(cast(Generator, generator), UNCONDITIONAL)
    assert result.coverage == 10
    assert QualityMonitor(coverage_threshold=0.8).observe(500, result) == []


def test_conditional_accuracy_of_a_collapsed_and_of_a_faithful_cgan(
    evaluator: Evaluator, digits: ImageDataset
) -> None:
    train, _ = digits.split(0.2, 0)
    collapsed = evaluator.evaluate(one_class(train, 3), CONDITIONAL)
    # asked for every class in turn, it is right only when asked for a 3
    assert collapsed.conditional_accuracy == pytest.approx(0.1, abs=0.03)
    faithful = FromRealImages(train.images, train.labels, per_class=True)
    result = evaluator.evaluate(cast(Generator, faithful), CONDITIONAL)
    assert result.conditional_accuracy is not None and result.conditional_accuracy > 0.95
    assert result.as_metrics()["cond_acc"] == result.conditional_accuracy


# ----------------------------------------------------------------------------- divergence


def test_divergence_after_k_rises_in_a_row() -> None:
    monitor = QualityMonitor(fd_patience=3)
    fds = [5.0, 4.0, 4.5, 4.8, 6.0, 7.0]  # rises at steps 300, 400, 500, 600
    raised = {
        step: monitor.observe(step, report(fd))
        for step, fd in zip(range(100, 700, 100), fds, strict=True)
    }
    assert [step for step, w in raised.items() if w] == [500, 600]
    (warning,) = raised[500]
    assert warning.kind == DIVERGENCE and warning.step == 500
    assert "rose 3 evaluations in a row" in warning.message
    assert "from 4 at step 200 to 6 at step 500" in warning.message
    assert monitor.best == BestEvaluation(200, 4.0)


def test_a_fall_resets_the_streak() -> None:
    monitor = QualityMonitor(fd_patience=2)
    for step, fd in enumerate([3.0, 4.0, 3.5, 4.0, 3.9, 4.1]):
        assert monitor.observe(step, report(fd)) == []
    assert monitor.observe(6, report(5.0))[0].kind == DIVERGENCE


def test_rises_within_the_tolerance_do_not_count() -> None:
    monitor = QualityMonitor(fd_patience=1, fd_tolerance=0.05)
    assert monitor.observe(1, report(10.0)) == []
    assert monitor.observe(2, report(10.4)) == []  # +4 %: noise
    assert monitor.observe(3, report(11.0))[0].kind == DIVERGENCE  # +5.8 %


def test_a_non_finite_distance_is_divergence_at_once() -> None:
    monitor = QualityMonitor()
    monitor.observe(1, report(3.0))
    (warning,) = monitor.observe(2, report(math.nan))
    assert warning.kind == DIVERGENCE and "nan" in warning.message
    assert monitor.best == BestEvaluation(1, 3.0)


def test_both_alarms_at_once_and_the_state_survives_a_round_trip() -> None:
    monitor = QualityMonitor(coverage_threshold=0.5, fd_patience=1)
    monitor.observe(10, report(2.0))
    restored = QualityMonitor.from_dict(json.loads(json.dumps(monitor.to_dict())))
    kinds = [w.kind for w in restored.observe(20, report(3.0, coverage=4))]
    assert kinds == [MODE_COLLAPSE, DIVERGENCE]
    assert restored.best == BestEvaluation(10, 2.0)


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="coverage_threshold"):
        QualityMonitor(coverage_threshold=8)
    with pytest.raises(ConfigError, match="fd_patience"):
        QualityMonitor(fd_patience=0)
