"""The mode-collapse and divergence alarm (DESIGN §9): pure logic over successive reports.

`QualityMonitor.observe(step, report)` returns the warnings that evaluation raises:

- "mode_collapse": fewer than coverage_threshold × num_classes classes got a fair share of
  the samples (see metrics.class_coverage).
- "class_collapse": collapse inside classes (DESIGN §9), naming each class concerned: its
  samples' diversity is below class_diversity_threshold of the real class's (copies of a
  few images), or, for a conditional model, fewer than class_accuracy_threshold of the
  samples asked for it are recognised as it (the class is not drawn, or drawn as garbage).
  For an unconditional model a class is judged on the samples recognised as it, once it has
  at least MIN_JUDGED_SAMPLES of them (a missing class is the coverage alarm's business).
- "divergence": the Fréchet distance rose at each of the last `fd_patience` evaluations
  (K rises in a row need K + 1 evaluations; a rise is more than `fd_tolerance`, a fraction
  of the previous value, 0 by default), or it is not finite.

A warning is returned at every evaluation where its condition holds, so a caller that stops
or rolls back acts on the first one and a caller that only reports sees it persist. `best`
is the evaluation with the lowest Fréchet distance so far: the one an alias `best` or a
rollback would point at. The state round-trips through `to_dict`/`from_dict` (plain JSON
values) so a resumed job keeps its streak and its best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ganserve.gan.errors import ConfigError
from ganserve.gan.metrics import QualityReport

MODE_COLLAPSE = "mode_collapse"
CLASS_COLLAPSE = "class_collapse"
DIVERGENCE = "divergence"
WARNING_KINDS = (MODE_COLLAPSE, CLASS_COLLAPSE, DIVERGENCE)
# Defaults of the within-class alarm: a faithful model sits near 1.0 on both; the copies of
# issue 13 read 0.1-0.3 diversity. Fractions of the real class's diversity / of the samples.
CLASS_DIVERSITY_THRESHOLD = 0.5
CLASS_ACCURACY_THRESHOLD = 0.5
MIN_JUDGED_SAMPLES = 10  # unconditional: classes with fewer recognised samples are not judged


@dataclass(frozen=True)
class QualityWarning:
    kind: str  # one of WARNING_KINDS
    step: int  # the training step of the evaluation that raised it
    message: str  # names the step and the values


@dataclass(frozen=True)
class BestEvaluation:
    step: int
    frechet_distance: float


class QualityMonitor:
    """Watches the reports of one training run, in step order."""

    def __init__(
        self,
        coverage_threshold: float = 0.8,
        fd_patience: int = 3,
        fd_tolerance: float = 0.0,
        class_diversity_threshold: float = CLASS_DIVERSITY_THRESHOLD,
        class_accuracy_threshold: float = CLASS_ACCURACY_THRESHOLD,
    ) -> None:
        if not 0.0 <= coverage_threshold <= 1.0:
            raise ConfigError(
                "coverage_threshold", f"must be a fraction in [0, 1], got {coverage_threshold}"
            )
        if fd_patience < 1:
            raise ConfigError("fd_patience", f"must be at least 1, got {fd_patience}")
        if not 0.0 <= fd_tolerance < math.inf:
            raise ConfigError("fd_tolerance", f"must be a fraction >= 0, got {fd_tolerance}")
        for name, value in (("class_diversity_threshold", class_diversity_threshold),
                            ("class_accuracy_threshold", class_accuracy_threshold)):  # fmt: skip
            if not 0.0 <= value <= 1.0:
                raise ConfigError(name, f"must be a fraction in [0, 1], got {value}")
        self.coverage_threshold = coverage_threshold  # fraction of the classes
        self.class_diversity_threshold = class_diversity_threshold  # of the real class's
        self.class_accuracy_threshold = class_accuracy_threshold  # of a class's samples
        self.fd_patience = fd_patience  # K: rises in a row that raise "divergence"
        self.fd_tolerance = fd_tolerance  # a rise is fd > previous * (1 + fd_tolerance)
        # evaluations before this step are still forming: no collapse alarms (runtime
        # setting from the job's `alarm_after`, not part of the saved state)
        self.collapse_alarms_from = 0
        self.best: BestEvaluation | None = None
        self.rises = 0  # consecutive evaluations whose FD exceeded the previous one
        self._last: tuple[int, float] | None = None  # (step, fd) of the previous evaluation
        self._streak_start: tuple[int, float] | None = None  # (step, fd) before the rises

    def observe(self, step: int, report: QualityReport) -> list[QualityWarning]:
        warnings: list[QualityWarning] = []

        # ---- mode collapse: too few classes covered
        forming = step < self.collapse_alarms_from
        needed = self.coverage_threshold * report.num_classes
        if report.coverage < needed and not forming:
            warnings.append(
                QualityWarning(
                    MODE_COLLAPSE,
                    step,
                    f"possible mode collapse at step {step}: {report.coverage} of "
                    f"{report.num_classes} classes covered (threshold {needed:g}), "
                    f"KL from uniform {report.kl_uniform:.3f}",
                )
            )

        # ---- collapse inside classes
        collapsed = [] if forming else self._collapsed_classes(report)
        if collapsed:
            names = ", ".join(f"'{name}'" for name, _ in collapsed)
            details = "; ".join(f"class '{name}': {why}" for name, why in collapsed)
            warnings.append(
                QualityWarning(
                    CLASS_COLLAPSE,
                    step,
                    f"collapse inside class{'es' if len(collapsed) > 1 else ''} {names} at "
                    f"step {step}: {details}",
                )
            )

        # ---- divergence: FD not finite, or rising K evaluations in a row
        fd = report.frechet_distance
        if not math.isfinite(fd):
            warnings.append(
                QualityWarning(DIVERGENCE, step, f"Fréchet distance is {fd} at step {step}")
            )
            return warnings
        if self._last is not None and fd > self._last[1] * (1.0 + self.fd_tolerance):
            if self.rises == 0:
                self._streak_start = self._last
            self.rises += 1
        else:
            self.rises = 0
        if self.rises >= self.fd_patience and self._streak_start is not None:
            start_step, start_fd = self._streak_start
            assert self.best is not None  # a rise needs an earlier finite evaluation
            warnings.append(
                QualityWarning(
                    DIVERGENCE,
                    step,
                    f"Fréchet distance rose {self.rises} evaluations in a row, from "
                    f"{start_fd:.4g} at step {start_step} to {fd:.4g} at step {step} "
                    f"(best {self.best.frechet_distance:.4g} at step {self.best.step})",
                )
            )
        self._last = (step, fd)
        if self.best is None or fd < self.best.frechet_distance:
            self.best = BestEvaluation(step, fd)
        return warnings

    def _collapsed_classes(self, report: QualityReport) -> list[tuple[str, str]]:
        """(class name, reason) of every class that is collapsed or missing, in class order."""
        found = []
        for quality in report.per_class:
            reasons = []
            if quality.accuracy is not None and quality.accuracy < self.class_accuracy_threshold:
                reasons.append(
                    f"{quality.accuracy:.0%} of its samples recognised as it "
                    f"(threshold {self.class_accuracy_threshold:.0%})"
                )
            judged = quality.accuracy is not None or quality.samples >= MIN_JUDGED_SAMPLES
            diversity = quality.diversity
            if judged and math.isfinite(diversity) and diversity < self.class_diversity_threshold:
                reasons.append(
                    f"diversity {diversity:.2f} of the real class's "
                    f"(threshold {self.class_diversity_threshold:g})"
                )
            if reasons:
                found.append((quality.name, ", ".join(reasons)))
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "coverage_threshold": self.coverage_threshold,
            "class_diversity_threshold": self.class_diversity_threshold,
            "class_accuracy_threshold": self.class_accuracy_threshold,
            "fd_patience": self.fd_patience,
            "fd_tolerance": self.fd_tolerance,
            "best": None if self.best is None else [self.best.step, self.best.frechet_distance],
            "rises": self.rises,
            "last": None if self._last is None else list(self._last),
            "streak_start": None if self._streak_start is None else list(self._streak_start),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityMonitor:
        monitor = cls(
            float(data["coverage_threshold"]),
            int(data["fd_patience"]),
            float(data.get("fd_tolerance", 0.0)),
            float(data.get("class_diversity_threshold", CLASS_DIVERSITY_THRESHOLD)),
            float(data.get("class_accuracy_threshold", CLASS_ACCURACY_THRESHOLD)),
        )
        if data.get("best") is not None:
            monitor.best = BestEvaluation(int(data["best"][0]), float(data["best"][1]))
        monitor.rises = int(data.get("rises", 0))
        if data.get("last") is not None:
            monitor._last = (int(data["last"][0]), float(data["last"][1]))
        if data.get("streak_start") is not None:
            start = data["streak_start"]
            monitor._streak_start = (int(start[0]), float(start[1]))
        return monitor
