"""Graceful shutdown and leases: a stopping worker checkpoints and hands its job back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from celery import signals
from celery.worker import state as celery_state

from ganserve.gan import checkpoint as gan_checkpoint
from ganserve.service.jobs.queue import pending_job_ids
from ganserve.settings import Settings
from ganserve.store import jobs, registry
from ganserve.store.events import read_events_sync
from ganserve.store.tables import utcnow
from ganserve.worker import shutdown
from ganserve.worker.app import create_celery_app
from ganserve.worker.resources import WorkerResources
from ganserve.worker.training import run_training_job
from tests.worker.support import ENDLESS, TINY, MakeJob, steps_of

WORKER = "test-worker:1"


@pytest.fixture(autouse=True)
def no_shutdown_requested() -> Iterator[None]:
    shutdown.reset()
    yield
    shutdown.reset()
    celery_state.should_stop = None
    celery_state.should_terminate = None


def test_the_lease_comes_from_the_settings(
    make_job: MakeJob, resources: WorkerResources, settings: Settings
) -> None:
    leased = WorkerResources(
        settings.model_copy(update={"job_lease_s": 7.0}), resources.store, resources.events
    )
    job_id = make_job(**ENDLESS)
    seen: list[float] = []

    def stop() -> bool:
        with resources.store.session() as session:
            job = jobs.get_job(session, job_id)
        if job.lease_expires_at is not None and job.heartbeat_at is not None:
            seen.append((job.lease_expires_at - job.heartbeat_at).total_seconds())
        return True  # stop at the first step boundary

    assert run_training_job(job_id, leased, WORKER, stop_requested=stop) == "released"
    assert seen and seen[0] == pytest.approx(7.0)


def test_a_stop_request_checkpoints_and_releases_the_job(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    job_id = make_job(steps=60, checkpoint_every=10)
    store = resources.store
    checkpoints = store.artifacts.checkpoints_dir(job_id)

    def stop() -> bool:  # like SIGTERM arriving right after the second checkpoint
        return len(gan_checkpoint.list_checkpoints(checkpoints)) >= 2

    assert run_training_job(job_id, resources, WORKER, stop_requested=stop) == "released"
    with store.session() as session:
        job = jobs.get_job(session, job_id)
        assert registry.list_models(session) == []
    # Queued again, nobody holds it, and the attempt it used was given back.
    assert (job.status, job.worker, job.lease_expires_at) == ("queued", None, None)
    assert (job.attempt, job.max_attempts, job.finished_at) == (1, 4, None)
    assert [step for step, _ in gan_checkpoint.list_checkpoints(checkpoints)] == [10, 20]
    events = read_events_sync(redis_client, job_id)
    assert events[-1].data == {"status": "queued", "attempt": 1, "step": 20}
    assert not any(e.is_terminal for e in events)

    # The next worker continues from that checkpoint, not from zero.
    assert run_training_job(job_id, resources, "next-worker:2") == "succeeded"
    events = read_events_sync(redis_client, job_id)
    second = events[[e.data.get("attempt") for e in events].index(2) :]
    assert steps_of(second, "progress")[0] == 30
    assert steps_of(second, "checkpoint") == [30, 40, 50, 60]
    with store.session() as session:
        [version] = registry.get_model(session, "digits-gan").versions
        job = jobs.get_job(session, job_id)
    assert (job.status, job.attempt, version.step) == ("succeeded", 2, 60)


def test_a_cancel_wins_over_a_stop_request(
    make_job: MakeJob, resources: WorkerResources, redis_client: redis.Redis
) -> None:
    job_id = make_job(**ENDLESS)

    def stop() -> bool:
        with resources.store.session() as session:
            jobs.request_cancel(session, job_id)  # arrives before the worker reads the flag
        return True

    assert run_training_job(job_id, resources, WORKER, stop_requested=stop) == "cancelled"
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
    assert job.status == "cancelled"
    assert read_events_sync(redis_client, job_id)[-1].data == {"status": "cancelled", "attempt": 1}


def test_a_superseded_attempt_does_not_release(
    make_job: MakeJob, resources: WorkerResources
) -> None:
    job_id = make_job(**ENDLESS)
    store = resources.store

    def stop() -> bool:
        # Our lease ran out and another worker took the job over before we stopped.
        with store.session() as session:
            jobs.claim_job(session, job_id, "usurper:2", 60, now=utcnow() + timedelta(hours=1))
        return True

    assert run_training_job(job_id, resources, WORKER, stop_requested=stop) == "lost"
    with store.session() as session:
        job = jobs.get_job(session, job_id)
    assert (job.status, job.attempt, job.worker, job.max_attempts) == ("running", 2, "usurper:2", 3)


def test_celery_shutdown_flags_are_seen() -> None:
    assert not shutdown.requested()
    celery_state.should_stop = 0  # EX_OK: falsy, but set
    assert shutdown.requested()
    celery_state.should_stop = None
    celery_state.should_terminate = 1
    assert shutdown.requested()
    celery_state.should_terminate = None
    assert not shutdown.requested()
    shutdown.install()
    signals.worker_shutting_down.send(sender="w@test", sig="SIGTERM", how="Warm", exitcode=0)
    assert shutdown.requested()


def test_the_task_resends_a_released_job_to_its_queue(
    make_job: MakeJob,
    resources: WorkerResources,
    redis_client: redis.Redis,
    redis_url: str,
    training_queue: str,
) -> None:
    settings = resources.settings.model_copy(
        update={"redis_url": redis_url, "training_queue": training_queue}
    )
    app = create_celery_app(settings)
    task = app.tasks["ganserve.train"]
    job_id = make_job(**ENDLESS)
    shutdown.request()  # the worker is stopping as the message arrives
    try:
        assert task(job_id) == "released"
        assert pending_job_ids(redis_client, training_queue) == {job_id}
    finally:
        app.close()
    with resources.store.session() as session:
        job = jobs.get_job(session, job_id)
    assert (job.status, job.attempt) == ("queued", 0)  # never claimed: nothing consumed


def test_a_short_job_is_unaffected(make_job: MakeJob, resources: WorkerResources) -> None:
    job_id = make_job(steps=TINY.steps)
    assert run_training_job(job_id, resources, WORKER, stop_requested=lambda: False) == (
        "succeeded"
    )
