"""Translation (CycleGAN) jobs: their metrics in status, history, events and the version, and
`on_alarm: rollback` to the best evaluation that raised no alarm.

Tiny runs: two uploaded 8 px domains of 200 labelled digits (grey, and on colour), a 4-channel
translator, 4-image batches. The evaluation classifiers are trained once per module and
copied into each test's data dir, as a worker would have cached them. A tiny translator's
real quality alarms at once, so the rollback tests script what the evaluator reports
(`_scripted`): real translations and metrics, with the kept share, spread and Fréchet
distance overridden per evaluation; everything after that (alarm, export, registration) is real.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
import safetensors.torch

from ganserve.gan.bundle import module_tensors
from ganserve.gan.checkpoint import list_checkpoints
from ganserve.gan.classifier import classifier_for
from ganserve.gan.data import (
    ImageDataset,
    load_digits,
    load_digits_on_colour,
    packed_dataset_path,
    resize_images,
    save_packed,
)
from ganserve.gan.translation.models import ResnetGenerator, TranslatorSpec
from ganserve.gan.translation.pairs import reconcile
from ganserve.gan.translation.quality import TranslationEvaluator, TranslationReport
from ganserve.gan.translation.train import load_cycle_checkpoint
from ganserve.gan.translation.translate import (
    TRANSLATOR_WEIGHTS,
    export_translator,
    load_translator,
)
from ganserve.settings import Settings
from ganserve.store import jobs, metrics, registry
from ganserve.store.events import read_events_sync
from ganserve.worker.quality import BEST_EXPORT
from ganserve.worker.resources import WorkerResources
from ganserve.worker.training import run_training_job
from ganserve.worker.translation_quality import HEALTHY_METRICS, TranslationTracker
from tests.worker.support import MakeJob

WORKER = "test-worker:1"
GREY, COLOUR = "grey-digits", "colour-digits"
# 16 steps, an evaluation every 4 (steps 4, 8, 12, 16), a checkpoint at each, all kept.
CYCLEGAN = {
    "architecture": "cyclegan", "dataset": GREY, "dataset_b": COLOUR, "steps": 16,
    "batch_size": 4, "eval_every": 4, "eval_samples": 20, "checkpoint_every": 4,
    "keep_checkpoints": 10, "sample_every": 8, "cyclegan_width": 4, "pool_size": 3,
}  # fmt: skip
TRANSLATION_METRICS = {
    f"{name}_{direction}"
    for name in ("kept", "fd", "fd_input", "cycle", "spread")
    for direction in ("a2b", "b2a")
} | {"fd", "eval_seconds"}
HEALTHY = {"kept": 0.9, "spread": 0.8}
DIGIT_LOST = {"kept": 0.1, "spread": 0.8}
INPUT_IGNORED = {"kept": 0.9, "spread": 0.01}


@functools.cache
def _domains() -> tuple[ImageDataset, ImageDataset]:
    digits, colour = load_digits(), load_digits_on_colour()
    grey = ImageDataset(GREY, digits.images[:200], digits.labels[:200], digits.class_names)
    on_colour = ImageDataset(
        COLOUR, resize_images(colour.images[200:400], 8), colour.labels[200:400],
        colour.class_names,
    )  # fmt: skip
    return grey, on_colour


@pytest.fixture(scope="module")
def pair_classifiers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both domains' evaluation classifiers, trained once (as the worker would train them)."""
    root = tmp_path_factory.mktemp("pair-classifiers")
    pair = reconcile(*_domains())
    for domain in (pair.a, pair.b):
        classifier_for(domain, root, "cpu")
    return root


@pytest.fixture
def uploaded_pair(settings: Settings, pair_classifiers: Path) -> None:
    for domain in _domains():
        save_packed(domain, packed_dataset_path(settings.data_dir, domain.name))
    shutil.copytree(pair_classifiers, settings.data_dir / "artifacts" / "classifiers",
                    dirs_exist_ok=True)  # fmt: skip


def _scripted(
    monkeypatch: pytest.MonkeyPatch, plan: Sequence[tuple[dict[str, float], float]]
) -> None:
    """The i-th evaluation reports plan[i]: (kept and spread of both directions, their fd)."""
    real = TranslationEvaluator.evaluate
    calls = iter(plan)

    def evaluate(
        self: TranslationEvaluator, g_ab: ResnetGenerator, g_ba: ResnetGenerator
    ) -> TranslationReport:
        report = real(self, g_ab, g_ba)
        values, fd = next(calls)
        return dataclasses.replace(
            report,
            a2b=dataclasses.replace(report.a2b, **values, fd=fd),
            b2a=dataclasses.replace(report.b2a, **values, fd=fd),
        )

    monkeypatch.setattr(TranslationEvaluator, "evaluate", evaluate)


def _checkpoint_weights(run_dir: Path, step: int) -> bytes:
    """The safetensors bytes an export of the EMA generators in checkpoint `step` has."""
    paths = dict(list_checkpoints(run_dir / "checkpoints"))
    state = load_cycle_checkpoint(paths[step])
    tensors = {f"a2b.{k}": v for k, v in module_tensors(state.g_ab_ema).items()}
    tensors |= {f"b2a.{k}": v for k, v in module_tensors(state.g_ba_ema).items()}
    return safetensors.torch.save(tensors)


@pytest.mark.usefixtures("uploaded_pair")
def test_translation_metrics_reach_status_history_events_and_the_version(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    job_id = make_job("colour", **(CYCLEGAN | {"steps": 8}))
    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
        series = metrics.history(session, job_id)
        version = registry.get_version(session, "colour", 1)
    for name in TRANSLATION_METRICS:
        assert [step for step, _ in series[name]] == [4, 8], name
        assert version.metrics[name] == series[name][-1][1], name
        assert job.latest_metrics[name] == series[name][-1][1], name
    assert {"loss_cycle", "loss_identity"} <= set(series)
    assert 0.0 <= version.metrics["kept_a2b"] <= 1.0 and version.metrics["cycle_b2a"] > 0.0
    evaluations = [e.data for e in read_events_sync(redis_client, job_id) if e.type == "evaluation"]
    assert [e["step"] for e in evaluations] == [4, 8]
    assert set(evaluations[-1]["metrics"]) == TRANSLATION_METRICS
    assert evaluations[-1]["metrics"]["kept_b2a"] == pytest.approx(series["kept_b2a"][-1][1])
    assert evaluations[0]["provenance"]["num_samples"] == 20


@pytest.mark.usefixtures("uploaded_pair")
def test_an_alarm_rolls_back_to_the_best_evaluation_without_alarms(
    make_job: MakeJob,
    resources: WorkerResources,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # step 4 healthy; step 8 healthy but worse; step 12 loses the digits, with the lowest
    # fd of all: rollback registers step 4, never the alarmed model however low its fd
    _scripted(monkeypatch, [(HEALTHY, 50.0), (HEALTHY, 60.0), (DIGIT_LOST, 10.0)])
    job_id = make_job("colour", **CYCLEGAN, on_alarm="rollback")
    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    store = resources.store
    with store.session() as session:
        job = jobs.get_job(session, job_id)
        version = registry.get_version(session, "colour", 1)
        best = registry.resolve(session, "colour", "best")
        series = metrics.history(session, job_id)
    assert version.step == 4 and best.version == 1
    assert [step for step, _ in series["kept_a2b"]] == [4, 8, 12]  # stopped at the alarm

    # the registered weights are the EMA generators of the step-4 checkpoint, byte for byte
    folder = store.artifacts.absolute(version.artifact_path)
    expected = _checkpoint_weights(store.artifacts.job_dir(job_id), 4)
    assert (folder / TRANSLATOR_WEIGHTS).read_bytes() == expected
    assert version.description["sha256"] == hashlib.sha256(expected).hexdigest()
    assert expected != _checkpoint_weights(store.artifacts.job_dir(job_id), 8)
    assert load_translator(folder).description["step"] == 4

    # ... and it carries the metrics of the evaluation that chose it
    assert version.metrics["fd"] == 50.0 and version.metrics["kept_a2b"] == 0.9
    assert version.metrics["cycle_a2b"] == series["cycle_a2b"][0][1]
    assert job.error is None
    rolled = [w for w in job.warnings if "rolled back" in w]
    assert len(rolled) == 1
    assert rolled[0].startswith("step 12: only 10% of a2b translations keep their class")
    assert "rolled back to step 4 (the best evaluation without alarms: Fréchet distance 50, " \
           "digit kept a2b 90% b2a 90%)" in rolled[0]  # fmt: skip

    events = read_events_sync(redis_client, job_id)
    assert [e.data["best"] for e in events if e.type == "evaluation"] == [True, False, False]
    assert [e.data["kind"] for e in events if e.type == "warning"] == ["digit_lost", "digit_lost"]
    assert events[-1].type == "status" and events[-1].data["status"] == "succeeded"


@pytest.mark.usefixtures("uploaded_pair")
def test_an_alarm_before_any_healthy_evaluation_fails_the_job(
    make_job: MakeJob,
    resources: WorkerResources,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _scripted(monkeypatch, [(INPUT_IGNORED, 50.0)])
    job_id = make_job("colour", **CYCLEGAN, on_alarm="rollback")
    assert run_training_job(job_id, resources, WORKER) == "failed"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
        assert registry.list_models(session) == []
    assert job.error == (
        "step 4: a2b translations no longer depend on their input (spread 0.010 < 0.1); "
        "no evaluation without alarms yet to roll back to"
    )
    assert not (resources.store.artifacts.job_dir(job_id) / "best").exists()
    events = read_events_sync(redis_client, job_id)
    assert events[-1].data == {"status": "failed", "attempt": 1, "error": job.error}


@pytest.mark.usefixtures("uploaded_pair")
def test_a_resumed_job_rolls_back_to_the_healthy_model_of_its_earlier_attempt(
    make_job: MakeJob,
    resources: WorkerResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the first attempt is stopped (worker shutdown) after its healthy step-4 evaluation;
    # the second resumes from the step-4 checkpoint and alarms at step 8
    _scripted(monkeypatch, [(HEALTHY, 50.0), (DIGIT_LOST, 10.0)])
    job_id = make_job("colour", **CYCLEGAN, on_alarm="rollback")
    run_dir = resources.store.artifacts.job_dir(job_id)

    def stop() -> bool:  # as the worker's SIGTERM flag would, once best/ was written
        return (run_dir / BEST_EXPORT).is_dir()

    assert run_training_job(job_id, resources, WORKER, stop_requested=stop) == "released"
    assert [step for step, _ in list_checkpoints(run_dir / "checkpoints")] == [4]
    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    with resources.store.session() as session:
        version = registry.get_version(session, "colour", 1)
    assert version.step == 4 and version.metrics["fd"] == 50.0
    folder = resources.store.artifacts.absolute(version.artifact_path)
    assert (folder / TRANSLATOR_WEIGHTS).read_bytes() == _checkpoint_weights(run_dir, 4)


def test_a_torn_best_export_is_not_a_rollback_target(tmp_path: Path) -> None:
    # what a resumed job finds in best/: used when intact, ignored when its weights are torn
    spec = TranslatorSpec(channels=3, image_size=8, width=4, blocks=1, d_width=4, d_layers=1)
    best = tmp_path / BEST_EXPORT
    export_translator(ResnetGenerator(spec), ResnetGenerator(spec), best,
                      {"step": 7, HEALTHY_METRICS: {"fd": 3.5, "kept_a2b": 0.9}})  # fmt: skip
    pair = reconcile(*_domains())
    tracker = TranslationTracker(None, pair, tmp_path)  # type: ignore[arg-type]  # unused here
    assert tracker.best == (7, 3.5)
    target = tracker.rollback_target()
    assert target is not None and target.folder == best and target.description["step"] == 7
    assert target.metrics == {"fd": 3.5, "kept_a2b": 0.9}
    weights = best / TRANSLATOR_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-4] + bytes(4))
    torn = TranslationTracker(None, pair, tmp_path)  # type: ignore[arg-type]
    assert torn.best is None and torn.rollback_target() is None
