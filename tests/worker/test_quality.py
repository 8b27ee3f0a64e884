"""The worker's quality tracker: evaluations, the best export and resumable alarm state."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ganserve.gan.checkpoint import load_generator
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import ImageDataset, load_digits
from ganserve.gan.train import train
from ganserve.worker.quality import QUALITY_STATE, build_tracker

CONFIG = TrainConfig(steps=20, batch_size=32, device="cpu", eval_samples=200, checkpoint_every=20)


def test_tracker_evaluates_exports_the_best_and_survives_a_resume(tmp_path: Path) -> None:
    digits = load_digits()
    state = train(CONFIG, digits, tmp_path / "run").state
    tracker = build_tracker(CONFIG, digits, tmp_path / "run", tmp_path / "classifiers",
                            torch.device("cpu"))  # fmt: skip
    assert tracker is not None
    first = tracker.evaluate(state)
    assert {"fd", "kid", "coverage", "kl_uniform", "eval_seconds"} <= set(first.metrics)
    assert first.provenance["num_samples"] == 200 and first.provenance["seed"] == 0
    assert len(first.provenance["extractor"]) == 16
    assert first.is_best and load_generator(tracker.best_dir).description["step"] == 20
    saved = json.loads((tmp_path / "run" / QUALITY_STATE).read_text())
    assert saved["best"] == [20, first.metrics["fd"]]

    # a second evaluation of the same weights is not better: best stays at step 20
    state.step = 30
    again = tracker.evaluate(state)
    assert again.metrics["fd"] == first.metrics["fd"] and not again.is_best

    # a new process (resume) rebuilds the monitor from quality.json; the classifier is cached
    resumed = build_tracker(CONFIG.replace(alarm_fd_patience=5), digits, tmp_path / "run",
                            tmp_path / "classifiers", torch.device("cpu"))  # fmt: skip
    assert resumed is not None and resumed.monitor.best is not None
    assert resumed.monitor.best.step == 20 and resumed.monitor.fd_patience == 5
    assert resumed.evaluator.classifier.identity == tracker.evaluator.classifier.identity


def test_unlabelled_datasets_are_not_evaluated(tmp_path: Path) -> None:
    digits = load_digits()
    blobs = ImageDataset("blobs", digits.images[:200], torch.zeros(200, dtype=torch.long),
                         ("all",))  # fmt: skip
    assert build_tracker(CONFIG, blobs, tmp_path, tmp_path / "c", torch.device("cpu")) is None
