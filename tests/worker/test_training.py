"""run_training_job against a real SQLite store and the real Redis, without Celery."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import pytest
import redis
from PIL import Image

from ganserve.gan import checkpoint as gan_checkpoint
from ganserve.gan.data import load_dataset
from ganserve.gan.errors import DivergenceError
from ganserve.gan.train import Progress, train
from ganserve.store import jobs, metrics, registry
from ganserve.store.errors import StateConflictError
from ganserve.store.events import EventPublisher, read_events_sync
from ganserve.store.tables import utcnow
from ganserve.worker import training
from ganserve.worker.resources import WorkerResources
from ganserve.worker.training import Outcome, progress_event, run_training_job
from tests.helpers.processes import free_port
from tests.worker.support import ENDLESS, TINY, MakeJob, steps_of, wait_for_event

WORKER = "test-worker:1"
RunInBackground = Callable[[str], "Future[Outcome]"]


@pytest.fixture
def run_in_background(resources: WorkerResources) -> Iterator[RunInBackground]:
    """Start run_training_job in a thread; jobs still running at teardown are cancelled."""
    started: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:

        def start(job_id: str) -> Future[Outcome]:
            started.append(job_id)
            return pool.submit(run_training_job, job_id, resources, WORKER)

        try:
            yield start
        finally:
            for job_id in started:  # so that a failed test does not wait for 1M steps
                with contextlib.suppress(StateConflictError), resources.store.session() as session:
                    jobs.request_cancel(session, job_id)


def test_job_succeeds_and_registers_one_loadable_version(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    job_id = make_job()
    assert run_training_job(job_id, resources, WORKER) == "succeeded"

    store = resources.store
    with store.session() as session:
        job = jobs.get_job(session, job_id)
        detail = registry.get_model(session, "digits-gan")
    assert (job.status, job.step, job.total_steps, job.error) == ("succeeded", 30, 30, None)
    assert (job.model_name, job.model_version, job.attempt) == ("digits-gan", 1, 1)
    assert set(job.last_losses) == {"d", "g"}
    [version] = detail.versions
    assert (version.version, version.job_id, version.step) == (1, job_id, 30)
    assert version.description["step"] == 30
    loaded = gan_checkpoint.load_generator(store.artifacts.absolute(version.artifact_path))
    assert loaded.spec.image_size == 8

    checkpoints = gan_checkpoint.list_checkpoints(store.artifacts.checkpoints_dir(job_id))
    assert checkpoints[-1][0] == 30
    with Image.open(io.BytesIO(store.artifacts.preview_path(job_id).read_bytes())) as preview:
        preview.load()
        # 64 previews of 8x8 px, 8 per row, 1 px padding: 8 * 9 + 1 = 73 px square.
        assert preview.size == (73, 73)

    events = read_events_sync(redis_client, job_id)
    assert events[0].type == "status"
    assert events[0].data == {"status": "running", "attempt": 1}
    progress = steps_of(events, "progress")
    assert progress == sorted(set(progress)) and progress[-1] == 30
    assert steps_of(events, "checkpoint") == [10, 20, 30]
    assert steps_of(events, "preview") == [10, 20, 30]
    last_progress = next(e for e in reversed(events) if e.type == "progress").data
    assert last_progress["total_steps"] == 30 and set(last_progress["losses"]) == {"d", "g"}
    assert [e.type for e in events[-2:]] == ["model", "status"]
    assert events[-2].data == {"name": "digits-gan", "version": 1}
    assert events[-1].data == {"status": "succeeded", "attempt": 1}
    assert sum(e.is_terminal for e in events) == 1

    # every progress write also extends the job's metric history
    with store.session() as session:
        series = metrics.history(session, job_id)
    assert {"loss_d", "loss_g", "d_real", "d_fake", "steps_per_sec"} <= set(series)
    assert [step for step, _ in series["loss_d"]] == progress
    assert all(0 <= value <= 1 for _, value in series["d_real"])

    # A duplicate delivery of the finished job writes nothing and registers nothing.
    assert run_training_job(job_id, resources, WORKER) == "skipped"
    with store.session() as session:
        assert len(registry.get_model(session, "digits-gan").versions) == 1
        assert jobs.get_job(session, job_id).attempt == 1
    assert len(read_events_sync(redis_client, job_id)) == len(events)


def test_progress_writes_are_throttled_but_the_last_is_always_written(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    slow = WorkerResources(
        resources.settings.model_copy(update={"progress_interval_s": 3600.0}),
        resources.store,
        resources.events,
    )
    job_id = make_job()
    assert run_training_job(job_id, slow, WORKER) == "succeeded"
    assert steps_of(read_events_sync(redis_client, job_id), "progress") == [10, 30]
    with resources.store.session() as session:
        assert jobs.get_job(session, job_id).step == 30


def test_a_new_attempt_resumes_from_the_last_checkpoint(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    job_id = make_job()
    store = resources.store
    # A first worker claimed the job, trained 20 steps and died; its lease ran out long ago.
    with store.session() as session:
        jobs.claim_job(session, job_id, "dead:1", 60, now=utcnow() - timedelta(hours=1))
    train(TINY.replace(steps=20), load_dataset("digits"), store.artifacts.job_dir(job_id))

    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    events = read_events_sync(redis_client, job_id)
    assert events[0].data == {"status": "running", "attempt": 2}
    assert steps_of(events, "progress") == [30]
    assert steps_of(events, "checkpoint") == [30]
    with store.session() as session:
        [version] = registry.get_model(session, "digits-gan").versions
        job = jobs.get_job(session, job_id)
    assert (version.step, job.attempt, job.worker) == (30, 2, WORKER)


def test_cancel_stops_training_keeps_a_checkpoint_and_registers_nothing(
    make_job: MakeJob,
    resources: WorkerResources,
    redis_client: redis.Redis,
    run_in_background: RunInBackground,
) -> None:
    job_id = make_job(**ENDLESS)
    future = run_in_background(job_id)
    wait_for_event(redis_client, job_id, "progress")
    with resources.store.session() as session:
        jobs.request_cancel(session, job_id)

    assert future.result(timeout=30) == "cancelled"
    store = resources.store
    with store.session() as session:
        job = jobs.get_job(session, job_id)
        assert registry.list_models(session) == []
    assert job.status == "cancelled" and job.model_version is None
    [(step, _path)] = gan_checkpoint.list_checkpoints(store.artifacts.checkpoints_dir(job_id))
    assert 0 < step < ENDLESS["steps"]
    events = read_events_sync(redis_client, job_id)
    assert steps_of(events, "checkpoint") == [step]
    assert events[-1].data == {"status": "cancelled", "attempt": 1}
    assert sum(e.is_terminal for e in events) == 1


def test_a_superseded_attempt_stops_without_writing(
    make_job: MakeJob,
    resources: WorkerResources,
    redis_client: redis.Redis,
    run_in_background: RunInBackground,
) -> None:
    job_id = make_job(**ENDLESS)
    future = run_in_background(job_id)
    wait_for_event(redis_client, job_id, "progress")
    store = resources.store
    # Another worker takes the job over, as it would once our lease had expired.
    with store.session() as session:
        assert jobs.claim_job(session, job_id, "usurper:2", 60, now=utcnow() + timedelta(hours=1))
    with store.session() as session:
        step_at_takeover = jobs.get_job(session, job_id).step

    assert future.result(timeout=30) == "lost"
    with store.session() as session:
        job = jobs.get_job(session, job_id)
    assert (job.status, job.attempt, job.worker) == ("running", 2, "usurper:2")
    assert job.step == step_at_takeover
    # Not even the engine's abort checkpoint: the folder belongs to the new attempt now.
    assert gan_checkpoint.list_checkpoints(store.artifacts.checkpoints_dir(job_id)) == []
    assert not any(e.is_terminal for e in read_events_sync(redis_client, job_id))


def test_unknown_dataset_fails_the_job_naming_it(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    job_id = make_job(dataset="no-such-set")
    assert run_training_job(job_id, resources, WORKER) == "failed"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
    assert job.status == "failed"
    assert job.error is not None and "no-such-set" in job.error
    events = read_events_sync(redis_client, job_id)
    assert [e.type for e in events] == ["status", "status"]
    assert events[-1].data == {"status": "failed", "attempt": 1, "error": job.error}


def test_a_config_the_dataset_cannot_satisfy_fails_the_job(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    job_id = make_job(batch_size=4000)  # digits has 1,797 images
    assert run_training_job(job_id, resources, WORKER) == "failed"
    with resources.store.session() as session:
        error = jobs.get_job(session, job_id).error
    assert error is not None and error.startswith("batch_size:")


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (DivergenceError(7, {"d": math.nan}), "training diverged at step 7"),
        (RuntimeError("boom"), "internal error: RuntimeError: boom"),
    ],
)
def test_errors_in_training_fail_the_job_without_raising(
    make_job: MakeJob,
    resources: WorkerResources,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
    error: str,
) -> None:
    def broken_train(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(training, "train", broken_train)
    job_id = make_job()
    assert run_training_job(job_id, resources, WORKER) == "failed"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
    assert job.status == "failed" and job.error is not None and job.error.startswith(error)
    last = read_events_sync(redis_client, job_id)[-1]
    assert last.data["status"] == "failed" and last.data["error"] == job.error


def test_a_cancelled_queued_job_is_skipped(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    job_id = make_job()
    with resources.store.session() as session:
        jobs.request_cancel(session, job_id)
    assert run_training_job(job_id, resources, WORKER) == "skipped"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
    assert (job.status, job.attempt) == ("cancelled", 0)
    assert read_events_sync(redis_client, job_id) == []


def test_an_unknown_job_is_skipped(resources: WorkerResources) -> None:
    assert run_training_job("0" * 32, resources, WORKER) == "skipped"


def test_an_unreachable_event_bus_does_not_fail_the_job(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    # Nothing listens on this port; no retries, so each failed publish returns at once.
    dead = redis.Redis(port=free_port(), retry=None, socket_connect_timeout=1)
    offline = WorkerResources(resources.settings, resources.store, EventPublisher(dead))
    job_id = make_job()
    assert run_training_job(job_id, offline, WORKER) == "succeeded"
    with resources.store.session() as session:
        assert jobs.get_job(session, job_id).model_version == 1


def test_progress_event_has_only_finite_numbers() -> None:
    progress = Progress(
        step=10,
        total_steps=30,
        losses={"d": math.nan, "g": 0.5},
        d_real=math.inf,
        d_fake=0.25,
        steps_per_sec=100.0,
        eta_s=-math.inf,
    )
    assert progress_event(progress) == {
        "step": 10,
        "total_steps": 30,
        "losses": {"d": None, "g": 0.5},
        "d_real": None,
        "d_fake": 0.25,
        "steps_per_sec": 100.0,
        "eta_s": None,
    }


def test_a_cancel_that_arrives_before_the_registration_wins(
    make_job: MakeJob,
    resources: WorkerResources,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race of a 1-step job: the cancel route answered "running, cancel requested" while
    # the worker was exporting; the job must not then end succeeded with a version registered.
    job_id = make_job(steps=1)
    export = training.export_generator

    def export_then_cancel(*args: object, **kwargs: object) -> object:
        description = export(*args, **kwargs)  # type: ignore[arg-type]
        with resources.store.session() as session:
            assert jobs.request_cancel(session, job_id).status == "running"
        return description

    monkeypatch.setattr(training, "export_generator", export_then_cancel)
    assert run_training_job(job_id, resources, WORKER) == "cancelled"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
        assert registry.list_models(session) == []
    assert job.status == "cancelled" and job.model_version is None and job.cancel_requested
    events = read_events_sync(redis_client, job_id)
    assert events[-1].data == {"status": "cancelled", "attempt": 1}


def test_a_cancel_after_the_registration_is_told_it_is_too_late(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    job_id = make_job(steps=1)
    assert run_training_job(job_id, resources, WORKER) == "succeeded"
    with pytest.raises(StateConflictError, match="already succeeded"):
        with resources.store.session() as session:
            jobs.request_cancel(session, job_id)
    with resources.store.session() as session:
        assert jobs.get_job(session, job_id).cancel_requested is False
