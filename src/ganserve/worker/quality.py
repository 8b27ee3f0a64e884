"""Quality evaluation of a training job: metrics, alarms and the best model so far.

Built once per job run: the digits-style classifier (trained once per dataset and cached
under the artifacts dir by content hash), an Evaluator over the held-out split, and a
QualityMonitor whose state survives a resume (`quality.json` in the run dir). Each
evaluation exports the EMA generator to `best/` when it is the best Fréchet distance so far,
so `on_alarm: rollback` and the `best` alias have a model to point at, and its metrics
(per-class values included) to `best-metrics.json`, so a rolled-back version carries them.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ganserve.gan.checkpoint import EXPORT_DESCRIPTION, export_generator
from ganserve.gan.classifier import ProgressFn, classifier_for
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import DatasetError, GanError
from ganserve.gan.files import write_atomic
from ganserve.gan.inception import InceptionExtractor, inception_frechet_distance
from ganserve.gan.metrics import Evaluator, QualityReport
from ganserve.gan.quality import QualityMonitor, QualityWarning
from ganserve.gan.state import TrainState

log = logging.getLogger(__name__)

QUALITY_STATE = "quality.json"
BEST_EXPORT = "best"
BEST_METRICS = "best-metrics.json"  # in the run dir: the metrics of the evaluation in best/


@dataclass(frozen=True)
class Evaluation:
    step: int
    metrics: dict[str, float]  # flat values for history, status and events
    provenance: dict[str, Any]  # extractor identity, dataset hash, sample count, seed
    warnings: list[QualityWarning]
    is_best: bool  # the best Fréchet distance so far (exported to best/)


@dataclass(frozen=True)
class RollbackTarget:
    """What `on_alarm: rollback` registers instead of the alarmed model."""

    folder: Path  # the exported model (best/ in the run dir)
    description: dict[str, Any]  # its JSON description; "step" is the step it comes from
    metrics: dict[str, float]  # the metrics of the evaluation that chose it
    summary: str  # why this one, for the job's warning ("Fréchet distance 12.3")


@dataclass
class QualityTracker:
    evaluator: Evaluator
    monitor: QualityMonitor
    run_dir: Path
    dataset_name: str
    inception: InceptionExtractor | None = None
    _inception_real: torch.Tensor | None = field(default=None, repr=False)

    @property
    def best_dir(self) -> Path:
        return self.run_dir / BEST_EXPORT

    def best_metrics(self) -> dict[str, float]:
        """The metrics of the evaluation exported to best/ ({} if none was written)."""
        path = self.run_dir / BEST_METRICS
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def rollback_target(self) -> RollbackTarget | None:
        """The generator in best/ with its metrics; None before one was exported."""
        if not (self.best_dir / EXPORT_DESCRIPTION).is_file():
            return None
        description = json.loads((self.best_dir / EXPORT_DESCRIPTION).read_text())
        best = self.monitor.best
        metrics = self.best_metrics()
        if best and "fd" not in metrics:
            metrics = {"fd": best.frechet_distance}
        summary = f"Fréchet distance {best.frechet_distance:.4g}" if best else ""
        return RollbackTarget(self.best_dir, description, metrics, summary)

    def evaluate(self, state: TrainState) -> Evaluation:
        report: QualityReport = self.evaluator.evaluate(state.generator_ema, state.spec)
        metrics = report.as_metrics()
        provenance = report.provenance()
        if self.inception is not None:
            if self._inception_real is None:
                self._inception_real = self.inception.extract(
                    self.evaluator.real_images, self.evaluator.device
                )
            metrics["inception_fd"] = inception_frechet_distance(
                state.generator_ema, state.spec, self.evaluator.real_images, self.inception,
                self.evaluator.samples, self.evaluator.seed, self.evaluator.device,
                self._inception_real,
            )  # fmt: skip
            provenance["inception_extractor"] = self.inception.identity
        warnings = self.monitor.observe(state.step, report)
        best = self.monitor.best
        is_best = best is not None and best.step == state.step
        if is_best:
            export_generator(state, self.best_dir, self.dataset_name)
            finite = {name: value for name, value in metrics.items() if math.isfinite(value)}
            write_atomic(self.run_dir / BEST_METRICS, json.dumps(finite).encode())
        write_atomic(self.run_dir / QUALITY_STATE, json.dumps(self.monitor.to_dict()).encode())
        return Evaluation(state.step, metrics, provenance, warnings, is_best)


def build_tracker(
    config: TrainConfig,
    dataset: ImageDataset,
    run_dir: Path,
    classifiers_dir: Path,
    device: torch.device,
    inception: InceptionExtractor | None = None,
    progress: ProgressFn | None = None,
) -> QualityTracker | None:
    """The job's tracker, or None when the dataset cannot be evaluated (e.g. no labels).

    `progress(step, total)` reports the one-time training of the dataset's classifier.
    """
    try:
        classifier = classifier_for(dataset, classifiers_dir, device, progress=progress)
    except DatasetError as error:
        log.warning("quality metrics off for dataset %s: %s", dataset.name, error)
        return None
    held_out = classifier.held_out(dataset)
    evaluator = Evaluator(
        classifier, held_out.images, real_labels=held_out.labels,
        samples=config.eval_samples, seed=config.seed, device=device,
    )  # fmt: skip
    monitor = QualityMonitor(config.alarm_coverage, config.alarm_fd_patience)
    saved = run_dir / QUALITY_STATE
    if saved.is_file():
        try:
            monitor = QualityMonitor.from_dict(json.loads(saved.read_text()))
        except (ValueError, KeyError, TypeError, GanError) as error:
            log.warning("ignoring unreadable %s: %s", saved, error)
        # a resumed job may have changed its alarm options; its streak and best carry over
        monitor.coverage_threshold = config.alarm_coverage
        monitor.fd_patience = config.alarm_fd_patience
    monitor.collapse_alarms_from = math.ceil(config.alarm_after * config.steps)
    return QualityTracker(evaluator, monitor, run_dir, dataset.name, inception)
