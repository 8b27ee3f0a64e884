"""SIGTERM to a worker mid-job, and cancelling queued and running jobs, with real processes."""

from __future__ import annotations

import signal
import time

import pytest
import redis

from ganserve.service.jobs.queue import UNACKED_KEY, pending_job_ids
from ganserve.store import jobs
from tests.reliability.conftest import FINISHED, Cluster, wait_for

pytestmark = pytest.mark.e2e

GRACE_S = 10.0  # what `ganserve up` (and most orchestrators' defaults, or more) allow


def test_a_sigterm_hands_the_running_job_to_another_worker_from_its_checkpoint(
    cluster: Cluster,
) -> None:
    first = cluster.start_worker("w1")
    job_id = cluster.submit(steps=400, checkpoint_every=100, sample_every=100)
    wait_for(lambda: cluster.job(job_id).step >= 50, 60, "the job to be under way")

    signalled = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(GRACE_S) == 0
    assert time.monotonic() - signalled < GRACE_S
    job = cluster.job(job_id)
    released_at = cluster.checkpoint_steps(job_id)[-1]
    # Back in the queue, nothing lost: the checkpoint is at the step it stopped at.
    assert (job.status, job.worker, job.attempt, job.max_attempts) == ("queued", None, 1, 4)
    assert 50 <= job.step <= released_at < 400  # the row has the last progress write
    first.wait_for_log(rf"released at step {released_at}\b", 1)
    first.wait_for_log(rf"job {job_id}: sent again to queue", 1)
    # Its own message was acknowledged; the only one left is the one it sent again.
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        assert client.llen(cluster.queue_name) == 1
        assert pending_job_ids(client, cluster.queue_name) == {job_id}
        assert not [e for e in client.hvals(UNACKED_KEY) if job_id.encode() in e]
    finally:
        client.close()

    second = cluster.start_worker("w2")
    done = cluster.wait_for_status(job_id, FINISHED, 60)
    assert (done.status, done.error, done.step, done.attempt) == ("succeeded", None, 400, 2)
    second.wait_for_log(rf"resuming from step {released_at}\b", 5)
    [version] = cluster.versions()
    assert (version.job_id, version.step) == (job_id, 400)


def test_cancel_a_queued_job_and_a_running_one(cluster: Cluster) -> None:
    queued = cluster.submit()
    with cluster.store.session() as session:
        jobs.request_cancel(session, queued)
    running = cluster.submit(steps=1_000_000, checkpoint_every=200, sample_every=1_000_000)
    worker = cluster.start_worker("w1")

    # The queued job never starts and uses no attempt.
    worker.wait_for_log(rf"job {queued}: not claimable", 30)
    job = cluster.job(queued)
    assert (job.status, job.attempt, job.started_at) == ("cancelled", 0, None)
    assert cluster.checkpoint_steps(queued) == []

    # The running one stops within seconds, keeping its last checkpoint.
    wait_for(lambda: cluster.job(running).step >= 250, 60, "the job to pass a checkpoint")
    asked = time.monotonic()
    with cluster.store.session() as session:
        jobs.request_cancel(session, running)
    done = cluster.wait_for_status(running, FINISHED, 10)
    assert time.monotonic() - asked < 5
    assert (done.status, done.attempt, done.model_version) == ("cancelled", 1, None)
    steps = cluster.checkpoint_steps(running)
    assert steps[0] == 200 and steps[-1] >= done.step - 10  # the stop checkpoint
    assert [e.data["status"] for e in cluster.events(running) if e.type == "status"] == [
        "running",
        "cancelled",
    ]
    # And the worker is free for the next job.
    after = cluster.submit(name="after-cancel")
    assert cluster.wait_for_status(after, FINISHED, 30).status == "succeeded"
    assert cluster.versions() == []
