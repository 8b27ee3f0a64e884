"""The reaper, pass by pass, against a real store and Redis (no worker processes)."""

from __future__ import annotations

import time
from datetime import timedelta

import redis
from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.service.jobs.queue import TrainingQueue, pending_job_ids
from ganserve.service.operations.reaper import Reaper
from ganserve.store import jobs
from ganserve.store.tables import utcnow
from tests.helpers.processes import free_port
from tests.reliability.conftest import Cluster, wait_for


def claim_long_ago(cluster: Cluster, job_id: str, worker: str = "dead@host:1") -> int:
    """Claim as a worker that died a minute ago (its 3 s lease expired long since)."""
    with cluster.store.session() as session:
        attempt = jobs.claim_job(session, job_id, worker, 3, now=utcnow() - timedelta(minutes=1))
    assert attempt is not None
    return attempt


def pending(cluster: Cluster) -> set[str]:
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        return pending_job_ids(client, cluster.queue_name)
    finally:
        client.close()


def test_a_job_whose_worker_was_lost_is_requeued_and_sent_again(cluster: Cluster) -> None:
    job_id = cluster.create_job()
    claim_long_ago(cluster, job_id)
    live = cluster.create_job()
    with cluster.store.session() as session:
        assert jobs.claim_job(session, live, "alive@host:2", 60) == 1

    [action] = cluster.reaper().run_once()
    assert (action.kind, action.job.id, action.job.status) == ("requeued", job_id, "queued")
    job = cluster.job(job_id)
    assert (job.status, job.attempt, job.max_attempts, job.worker) == ("queued", 1, 3, None)
    assert pending(cluster) == {job_id}
    assert cluster.job(live).status == "running"  # a live lease is left alone
    # Idempotent: another pass (or another API replica) finds nothing more to do.
    assert cluster.reaper().run_once() == []
    assert pending(cluster) == {job_id}


def test_a_job_out_of_attempts_fails_with_the_reason(cluster: Cluster) -> None:
    job_id = cluster.create_job(max_attempts=1)
    claim_long_ago(cluster, job_id, "w1@host:42")

    [action] = cluster.reaper().run_once()
    job = cluster.job(job_id)
    assert (action.kind, job.status, job.attempt) == ("failed", "failed", 1)
    assert job.error is not None
    assert job.error.startswith("worker lost: attempt 1 of 1 stopped heartbeating")
    assert "w1@host:42" in job.error
    assert pending(cluster) == set()


def test_a_lost_job_with_a_cancel_requested_ends_cancelled(cluster: Cluster) -> None:
    job_id = cluster.create_job()
    claim_long_ago(cluster, job_id)
    with cluster.store.session() as session:
        jobs.request_cancel(session, job_id)

    [action] = cluster.reaper().run_once()
    assert (action.kind, cluster.job(job_id).status) == ("cancelled", "cancelled")
    assert pending(cluster) == set()


def test_a_lost_message_is_sent_again_once(cluster: Cluster) -> None:
    lost = cluster.create_job()  # committed, but its message never reached the broker
    sent = cluster.submit()
    now = utcnow() + timedelta(seconds=61)  # past requeue_after_s (60 s) for both
    assert cluster.reaper().run_once(now=utcnow()) == []  # too early: nothing yet

    first, second = cluster.reaper(), cluster.reaper()  # two API replicas, same moment
    [action] = first.run_once(now=now)
    assert second.run_once(now=now) == []
    assert (action.kind, action.job.id) == ("resent", lost)
    assert cluster.job(lost).enqueued_at == now
    assert pending(cluster) == {lost, sent}
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        assert client.llen(cluster.queue_name) == 2  # one message each
    finally:
        client.close()


def test_a_broker_that_is_down_fails_no_pass(cluster: Cluster) -> None:
    job_id = cluster.create_job()
    claim_long_ago(cluster, job_id)
    queued = cluster.create_job()
    dead = TrainingQueue(f"redis://127.0.0.1:{free_port()}/0", cluster.queue_name)
    try:
        reaper = Reaper(cluster.store, dead, requeue_after_s=1)
        [action] = reaper.run_once()  # the job is requeued, its send fails and is logged
        assert (action.kind, cluster.job(job_id).status) == ("requeued", "queued")
        # Later passes find both queued jobs unsent but cannot read the broker: no change.
        assert reaper.run_once(now=utcnow() + timedelta(seconds=5)) == []
    finally:
        dead.close()
    # Once the broker is back, both are sent.
    actions = cluster.reaper().run_once(now=utcnow() + timedelta(seconds=61))
    assert {(a.kind, a.job.id) for a in actions} == {("resent", job_id), ("resent", queued)}


def test_the_api_runs_the_reaper_in_the_background(cluster: Cluster) -> None:
    settings = cluster.settings.model_copy(update={"reaper_interval_s": 0.05})
    job_id = cluster.create_job()
    claim_long_ago(cluster, job_id)
    started = time.monotonic()
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: cluster.job(job_id).status == "queued", 10, "the reaper to requeue")
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        status = wait_for(
            lambda: [e for e in cluster.events(job_id) if e.type == "status"], 5, "an event"
        )
        assert status[-1].data["status"] == "queued"
    assert time.monotonic() - started < 10  # and shutting down does not hang
    assert pending(cluster) == {job_id}
