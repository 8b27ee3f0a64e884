from __future__ import annotations

import dataclasses
import json
import math
from typing import cast

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ganserve.gan.classifier import TrainedClassifier, fit_classifier
from ganserve.gan.config import ModelSpec
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import ConfigError
from ganserve.gan.metrics import ClassQuality, Evaluator, QualityReport
from ganserve.gan.models import Generator
from ganserve.gan.quality import (
    CLASS_COLLAPSE,
    DIVERGENCE,
    MODE_COLLAPSE,
    BestEvaluation,
    QualityMonitor,
)

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
        self.spec = CONDITIONAL if per_class else UNCONDITIONAL  # what samplers read

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


def test_collapse_alarms_wait_while_the_model_is_forming(
    evaluator: Evaluator, digits: ImageDataset
) -> None:
    train, _ = digits.split(0.2, 0)
    result = evaluator.evaluate(one_class(train, 3), UNCONDITIONAL)
    monitor = QualityMonitor(coverage_threshold=0.8)
    monitor.collapse_alarms_from = 1000  # e.g. alarm_after 0.5 of 2,000 steps
    assert monitor.observe(500, result) == []  # still forming: recorded, not alarmed
    assert monitor.best is not None and monitor.best.step == 500
    assert [w.kind for w in monitor.observe(1000, result)] == [MODE_COLLAPSE]


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


# ----------------------------------------------------------------------------- inside classes
# Issue 13: a conditional model can draw the right digit for every class and the same picture
# for every seed. The reference is one half of the classifier's held-out split; "real
# held-out digits" are the other half, which neither the classifier nor the reference saw.


@pytest.fixture(scope="module")
def halves(clf: TrainedClassifier, digits: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
    return clf.held_out(digits).split(0.5, 1)


@pytest.fixture(scope="module")
def class_evaluator(clf: TrainedClassifier, halves: tuple[ImageDataset, ImageDataset]) -> Evaluator:
    reference = halves[0]
    return Evaluator(clf, reference.images, real_labels=reference.labels, samples=500, seed=3)


def bank(images: torch.Tensor, labels: torch.Tensor) -> Generator:
    """A cGAN that draws, for class k, one of the given images of class k (chosen by z)."""
    return cast(Generator, FromRealImages(images, labels, per_class=True))


def blurred(images: torch.Tensor) -> torch.Tensor:
    # (N, 1, 8, 8) uint8 -> the same, each pixel the mean of its 3x3 neighbourhood
    x = F.avg_pool2d(images.float(), 3, stride=1, padding=1, count_include_pad=False)
    return x.round().to(torch.uint8)


def uniform_noise(count: int, seed: int = 0) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 1, 8, 8), generator=rng, dtype=torch.uint8)


def class_warnings(evaluator: Evaluator, generator: Generator, spec: ModelSpec) -> list[str]:
    result = evaluator.evaluate(generator, spec)
    return [w.message for w in QualityMonitor().observe(500, result) if w.kind == CLASS_COLLAPSE]


def test_real_held_out_digits_pass_inside_every_class(
    class_evaluator: Evaluator, halves: tuple[ImageDataset, ImageDataset]
) -> None:
    unseen = halves[1]
    result = class_evaluator.evaluate(bank(unseen.images, unseen.labels), CONDITIONAL)
    assert len(result.per_class) == 10
    assert result.conditional_accuracy is not None and result.conditional_accuracy >= 0.95
    assert result.unrecognised <= 0.05
    for quality in result.per_class:
        assert quality.samples == 50
        assert quality.accuracy is not None and quality.accuracy >= 0.85, quality
        assert 0.7 <= quality.diversity <= 1.3, quality
        assert quality.recall >= 0.6, quality
    metrics = result.as_metrics()
    assert metrics["class_div_min"] == min(q.diversity for q in result.per_class)
    assert metrics["class_div.3"] == result.per_class[3].diversity
    assert {f"class_{m}.{k}" for m in ("fd", "div", "recall", "acc") for k in range(10)} <= set(
        metrics
    )
    assert QualityMonitor().observe(500, result) == []
    # unconditional, judged by the class each sample is recognised as
    mixed = FromRealImages(unseen.images, unseen.labels, per_class=False)
    plain = class_evaluator.evaluate(cast(Generator, mixed), UNCONDITIONAL)
    assert plain.conditional_accuracy is None and plain.coverage == 10
    # (judged on recognised samples only, so the odd-looking real ones are left out)
    assert all(q.accuracy is None and q.diversity >= 0.6 for q in plain.per_class)
    assert QualityMonitor().observe(500, plain) == []


def test_one_repeated_real_image_per_class_is_flagged_in_every_class(
    class_evaluator: Evaluator, halves: tuple[ImageDataset, ImageDataset]
) -> None:
    unseen = halves[1]
    firsts = torch.stack([torch.nonzero(unseen.labels == k)[0, 0] for k in range(10)])  # (10,)
    copies = bank(unseen.images[firsts], unseen.labels[firsts])
    result = class_evaluator.evaluate(copies, CONDITIONAL)
    # the classifier is right about every one of them: the old metrics said healthy
    assert result.conditional_accuracy is not None and result.conditional_accuracy >= 0.9
    assert result.coverage == 10
    assert all(q.diversity == 0.0 and q.recall < 0.5 for q in result.per_class)
    (message,) = class_warnings(class_evaluator, copies, CONDITIONAL)
    assert "'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'" in message
    assert "diversity 0.00" in message
    # unconditional: ten pictures in all, each class a copy of one image
    plain = cast(Generator, FromRealImages(unseen.images[firsts], unseen.labels[firsts], False))
    (message,) = class_warnings(class_evaluator, plain, UNCONDITIONAL)
    assert "class '3': diversity 0.00" in message


def test_blurred_digits_are_not_vouched_for(
    class_evaluator: Evaluator, halves: tuple[ImageDataset, ImageDataset]
) -> None:
    unseen = halves[1]
    result = class_evaluator.evaluate(bank(blurred(unseen.images), unseen.labels), CONDITIONAL)
    assert result.unrecognised >= 0.5
    assert result.conditional_accuracy is not None and result.conditional_accuracy <= 0.5
    (message,) = class_warnings(
        class_evaluator, bank(blurred(unseen.images), unseen.labels), CONDITIONAL
    )
    assert "recognised as it" in message


def test_noise_is_unrecognised_and_flagged_in_every_class(
    class_evaluator: Evaluator, halves: tuple[ImageDataset, ImageDataset]
) -> None:
    labels = halves[1].labels
    noise = bank(uniform_noise(len(labels)), labels)
    result = class_evaluator.evaluate(noise, CONDITIONAL)
    assert result.unrecognised >= 0.9
    assert result.conditional_accuracy is not None and result.conditional_accuracy <= 0.05
    assert result.coverage <= 1  # garbage counts in no class
    assert all(q.recall <= 0.2 for q in result.per_class)
    (message,) = class_warnings(class_evaluator, noise, CONDITIONAL)
    assert "'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'" in message


def test_one_class_replaced_by_noise_is_named(
    class_evaluator: Evaluator, halves: tuple[ImageDataset, ImageDataset]
) -> None:
    unseen = halves[1]
    images = unseen.images.clone()
    fours = unseen.labels == 4
    images[fours] = uniform_noise(int(fours.sum()), seed=1)
    result = class_evaluator.evaluate(bank(images, unseen.labels), CONDITIONAL)
    assert result.per_class[4].accuracy is not None and result.per_class[4].accuracy <= 0.1
    worst = result.worst("accuracy")
    assert worst is not None and worst.label == 4
    (message,) = class_warnings(class_evaluator, bank(images, unseen.labels), CONDITIONAL)
    assert message.startswith("collapse inside class '4' at step 500: class '4': ")


def test_the_class_alarm_names_classes_and_its_thresholds_survive_a_round_trip() -> None:
    base = report(3.0)
    classes = tuple(
        ClassQuality(k, f"c{k}", 50, 1.0, 0.2 if k in (2, 7) else 0.9, 0.9, 0.98) for k in range(10)
    )
    collapsed = dataclasses.replace(base, per_class=classes)
    monitor = QualityMonitor(class_diversity_threshold=0.3)
    restored = QualityMonitor.from_dict(json.loads(json.dumps(monitor.to_dict())))
    (warning,) = restored.observe(700, collapsed)
    assert warning.kind == CLASS_COLLAPSE and warning.step == 700
    assert "classes 'c2', 'c7' at step 700" in warning.message
    assert "diversity 0.20 of the real class's (threshold 0.3)" in warning.message
    assert QualityMonitor(class_diversity_threshold=0.1).observe(700, collapsed) == []
    with pytest.raises(ConfigError, match="class_diversity_threshold"):
        QualityMonitor(class_diversity_threshold=1.5)
