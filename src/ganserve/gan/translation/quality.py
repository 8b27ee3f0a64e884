"""Quality of a translation model, offline (DESIGN §9): one classifier per domain.

Each domain gets the project's evaluation classifier (gan/classifier.py), trained on that
domain's own labels. For held-out real images x of the source domain with labels y:

- kept (per direction): the share of translations G(x) that the *target* domain's
  classifier puts in class y (a translation must change the style, not the digit); a
  prediction below CONFIDENCE counts as a miss, so noise cannot vouch for itself.
- fd / fd_input: Fréchet distance, in the target classifier's features, of the translations
  to the target domain's real held-out images, and that of the untranslated inputs: a
  useful model has fd well below fd_input.
- cycle: mean |F(G(x)) - x| in [-1, 1] units (the cycle-consistency loss, measured).
- spread: the total feature variance of the translations over that of the real target
  images. Near 0 means all outputs look alike whatever the input (collapse).

`TranslationMonitor` raises two alarms: "input_ignored" when spread falls below
alarm_spread (translations stop depending on their input) and "digit_lost" when kept falls
below alarm_kept in either direction (translations stop keeping their class).
Both domains need the same class names (>= 2 classes) for this; the built-in pair has them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ganserve.gan.classifier import TrainedClassifier
from ganserve.gan.errors import ConfigError
from ganserve.gan.metrics import frechet_distance
from ganserve.gan.quality import QualityWarning
from ganserve.gan.state import EVAL_STREAM, stream_seed
from ganserve.gan.translation.models import ResnetGenerator
from ganserve.gan.translation.pairs import DomainPair, domain_order
from ganserve.gan.translation.translate import translate

INPUT_IGNORED, DIGIT_LOST = "input_ignored", "digit_lost"
CONFIDENCE = 0.5  # a translation the target classifier is less sure of counts as not kept
DEFAULT_ALARM_SPREAD = 0.1
DEFAULT_ALARM_KEPT = 0.5
CHUNK = 256


@dataclass(frozen=True)
class DirectionReport:
    kept: float  # share of translations classified (confidently) as their input's class
    fd: float  # FD(translations, real target) in the target classifier's features
    fd_input: float  # FD(untranslated inputs, real target): the baseline to beat
    cycle: float  # mean |F(G(x)) - x|, [-1, 1] units
    spread: float  # feature variance of translations / that of real target images


@dataclass(frozen=True)
class TranslationReport:
    a2b: DirectionReport
    b2a: DirectionReport
    num_samples: int  # inputs translated per direction
    extractors: tuple[str, str]  # identities of the A and B classifiers
    classifier_accuracy: tuple[float, float]  # their held-out accuracies
    seconds: float

    def as_metrics(self) -> dict[str, float]:
        """Flat values for history, status and events (`kept_a2b`, `fd_b2a`, ...)."""
        values: dict[str, float] = {"eval_seconds": self.seconds}
        for name, report in (("a2b", self.a2b), ("b2a", self.b2a)):
            values |= {
                f"kept_{name}": report.kept,
                f"fd_{name}": report.fd,
                f"fd_input_{name}": report.fd_input,
                f"cycle_{name}": report.cycle,
                f"spread_{name}": report.spread,
            }
        values["fd"] = (self.a2b.fd + self.b2a.fd) / 2  # what "best" and divergence watch
        return values

    def provenance(self) -> dict[str, Any]:
        return {
            "extractor_a": self.extractors[0],
            "extractor_b": self.extractors[1],
            "classifier_accuracy_a": self.classifier_accuracy[0],
            "classifier_accuracy_b": self.classifier_accuracy[1],
            "num_samples": self.num_samples,
        }


def _classify(
    classifier: TrainedClassifier, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) uint8 -> ((N, F) features, (N,) labels, -1 where not confident)."""
    features, _ = classifier.embed(images)
    with torch.inference_mode():
        logits = classifier.model.head(features.float().to(classifier.device)).cpu()
    confidence, predicted = logits.softmax(dim=1).max(dim=1)
    return features, torch.where(confidence >= CONFIDENCE, predicted, -1)


def _spread(features: torch.Tensor, reference: torch.Tensor) -> float:
    return float(features.var(dim=0).sum() / reference.var(dim=0).sum().clamp_min(1e-12))


class TranslationEvaluator:
    """Evaluates a pair of generators against held-out real images of both domains."""

    def __init__(
        self,
        pair: DomainPair,
        classifier_a: TrainedClassifier,
        classifier_b: TrainedClassifier,
        *,
        samples: int = 500,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if not pair.class_names:
            raise ConfigError(
                "dataset_b", "translation quality needs both domains labelled with the same "
                "classes (at least 2)",
            )  # fmt: skip
        if samples < 2:
            raise ConfigError("eval_samples", f"must be at least 2, got {samples}")
        self.classifiers = (classifier_a.to(device), classifier_b.to(device))
        self.device = torch.device(device)
        self.held_out = []
        for index, (domain, classifier) in enumerate(
            ((pair.a, classifier_a), (pair.b, classifier_b))
        ):
            held = classifier.held_out(domain)
            order = domain_order(len(held), stream_seed(seed, EVAL_STREAM, index))[:samples]
            self.held_out.append((held.images[order], held.labels[order]))  # (N, C, H, W), (N,)
        self.real_features = [self.classifiers[i].embed(self.held_out[i][0])[0] for i in (0, 1)]
        self.num_samples = min(len(self.held_out[0][0]), len(self.held_out[1][0]))

    def _direction(
        self, forward: ResnetGenerator, backward: ResnetGenerator, source: int
    ) -> DirectionReport:
        target = 1 - source
        images, labels = self.held_out[source]
        translated = torch.cat([translate(forward, images[i : i + CHUNK], self.device)
                                for i in range(0, len(images), CHUNK)])  # fmt: skip
        restored = torch.cat([translate(backward, translated[i : i + CHUNK], self.device)
                              for i in range(0, len(translated), CHUNK)])  # fmt: skip
        features, predicted = _classify(self.classifiers[target], translated)
        input_features, _ = self.classifiers[target].embed(images)
        real = self.real_features[target]
        cycle = (restored.float() - images.float()).abs().mean() / 127.5
        return DirectionReport(
            kept=float((predicted == labels).double().mean()),
            fd=frechet_distance(features, real),
            fd_input=frechet_distance(input_features, real),
            cycle=float(cycle),
            spread=_spread(features, real),
        )

    def evaluate(self, g_ab: ResnetGenerator, g_ba: ResnetGenerator) -> TranslationReport:
        start = time.perf_counter()
        a2b, b2a = self._direction(g_ab, g_ba, 0), self._direction(g_ba, g_ab, 1)
        return TranslationReport(
            a2b=a2b,
            b2a=b2a,
            num_samples=self.num_samples,
            extractors=(self.classifiers[0].identity, self.classifiers[1].identity),
            classifier_accuracy=(self.classifiers[0].accuracy, self.classifiers[1].accuracy),
            seconds=time.perf_counter() - start,
        )


class TranslationMonitor:
    """The two alarms of a translation run (see the module docstring); pure logic."""

    def __init__(
        self, alarm_spread: float = DEFAULT_ALARM_SPREAD, alarm_kept: float = DEFAULT_ALARM_KEPT
    ) -> None:
        self.alarm_spread, self.alarm_kept = alarm_spread, alarm_kept

    def observe(self, step: int, report: TranslationReport) -> list[QualityWarning]:
        warnings = []
        for name, direction in (("a2b", report.a2b), ("b2a", report.b2a)):
            if not direction.spread >= self.alarm_spread:  # NaN raises it too
                warnings.append(QualityWarning(
                    INPUT_IGNORED, step, f"step {step}: {name} translations no longer depend on "
                    f"their input (spread {direction.spread:.3f} < {self.alarm_spread})",
                ))  # fmt: skip
            if not direction.kept >= self.alarm_kept:
                warnings.append(QualityWarning(
                    DIGIT_LOST, step, f"step {step}: only {direction.kept:.0%} of {name} "
                    f"translations keep their class (alarm below {self.alarm_kept:.0%})",
                ))  # fmt: skip
        return warnings
