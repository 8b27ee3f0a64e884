"""Quality of a translation (CycleGAN) job: evaluations, alarms, the healthy model to go back to.

The noise GANs' tracker (worker/quality.py) has its counterpart here, built on the metrics of
gan.translation.quality: digit kept, Fréchet distance against that of the untranslated
inputs, cycle error, spread; and its alarms, `input_ignored` and `digit_lost`.

Rollback target. An evaluation is *healthy* when it raises no alarm and its `fd` (the mean
of both directions) is finite. Each healthy evaluation whose `fd` is the lowest of the
healthy ones so far exports both EMA generators to `best/` in the run dir, the evaluation's
metrics inside its translator.json; an evaluation that alarms is never exported, however low
its `fd`. So `on_alarm: rollback` registers the best model no alarm fired on, and the version
carries that evaluation's metrics; before the first healthy evaluation there is nothing to
roll back to and the job fails, saying so.

The export is the whole state: its description is written last and holds the sha256 of the
weights, so a resumed job reads `best/` back (step and `fd`) and a torn export is ignored.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from ganserve.gan.bundle import read_bundle
from ganserve.gan.errors import CheckpointError
from ganserve.gan.translation.pairs import DomainPair
from ganserve.gan.translation.quality import TranslationEvaluator, TranslationMonitor
from ganserve.gan.translation.train import CycleState
from ganserve.gan.translation.translate import (
    TRANSLATOR_FORMAT,
    TRANSLATOR_FORMAT_VERSION,
    TRANSLATOR_NAME,
    export_translator,
)
from ganserve.worker.quality import BEST_EXPORT, Evaluation, RollbackTarget

log = logging.getLogger(__name__)

HEALTHY_METRICS = "metrics"  # key of the evaluation's metrics in best/translator.json


def export_translation(
    state: CycleState,
    pair: DomainPair,
    folder: Path,
    metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Export the EMA generators of `state` to `folder`; its description (with `metrics`)."""
    fields: dict[str, Any] = {
        "dataset": state.config.dataset, "dataset_b": pair.b.name, "step": state.step,
        "train_config": state.config.to_dict(),
    }  # fmt: skip
    if metrics is not None:
        fields[HEALTHY_METRICS] = metrics
    return export_translator(state.g_ab_ema, state.g_ba_ema, folder, fields)


class TranslationTracker:
    """Evaluates a translation run on schedule and keeps its best healthy model in best/."""

    def __init__(
        self,
        evaluator: TranslationEvaluator,
        pair: DomainPair,
        run_dir: Path,
        monitor: TranslationMonitor | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.monitor = monitor or TranslationMonitor()  # the alarms' default thresholds
        self.pair = pair
        self.run_dir = run_dir
        # (step, fd) of the export in best/: left by an earlier attempt of this job, or None
        self.best: tuple[int, float] | None = None
        described = self._best_description()
        if described is not None:
            self.best = (int(described["step"]), float(described[HEALTHY_METRICS]["fd"]))

    @property
    def best_dir(self) -> Path:
        return self.run_dir / BEST_EXPORT

    def evaluate(self, state: CycleState) -> Evaluation:
        """Evaluate the EMA generators; export them to best/ when healthy and best so far."""
        report = self.evaluator.evaluate(state.g_ab_ema, state.g_ba_ema)
        metrics = report.as_metrics()
        warnings = self.monitor.observe(state.step, report)
        fd = metrics["fd"]
        is_best = not warnings and math.isfinite(fd) and (self.best is None or fd < self.best[1])
        if is_best:
            finite = {name: value for name, value in metrics.items() if math.isfinite(value)}
            export_translation(state, self.pair, self.best_dir, finite)
            self.best = (state.step, fd)
        return Evaluation(state.step, metrics, report.provenance(), warnings, is_best)

    def rollback_target(self) -> RollbackTarget | None:
        """The model in best/ with its evaluation's metrics; None before a healthy evaluation."""
        description = self._best_description()
        if description is None:
            return None
        metrics = {str(k): float(v) for k, v in description[HEALTHY_METRICS].items()}
        kept = " ".join(
            f"{direction} {metrics[f'kept_{direction}']:.0%}"
            for direction in ("a2b", "b2a")
            if f"kept_{direction}" in metrics
        )
        summary = f"the best evaluation without alarms: Fréchet distance {metrics['fd']:.4g}"
        return RollbackTarget(
            self.best_dir, description, metrics, summary + (f", digit kept {kept}" if kept else "")
        )

    def _best_description(self) -> dict[str, Any] | None:
        """best/translator.json when the export in best/ is complete and intact."""
        if not (self.best_dir / f"{TRANSLATOR_NAME}.json").is_file():
            return None
        try:
            description, _ = read_bundle(
                self.best_dir, TRANSLATOR_NAME, kind="exported translator",
                fmt=TRANSLATOR_FORMAT, version=TRANSLATOR_FORMAT_VERSION,
            )  # fmt: skip
            if not math.isfinite(float(description[HEALTHY_METRICS]["fd"])):
                raise ValueError("its fd is not finite")
            int(description["step"])
        except (CheckpointError, KeyError, TypeError, ValueError) as error:
            log.warning("ignoring the unusable export in %s: %s", self.best_dir, error)
            return None
        return description
