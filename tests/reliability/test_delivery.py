"""Messages delivered twice, or lost by a Redis restart: every job still runs exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from ganserve.runtime.embedded_redis import EmbeddedRedis
from ganserve.service.jobs.queue import pending_job_ids
from ganserve.store.tables import utcnow
from tests.reliability.conftest import FINISHED, Cluster

pytestmark = pytest.mark.e2e


def test_a_job_delivered_to_two_workers_at_once_trains_once(cluster: Cluster) -> None:
    workers = cluster.start_workers("w1", "w2")
    job_id = cluster.submit(steps=300, checkpoint_every=100, sample_every=100)
    cluster.queue.enqueue(job_id)  # the same job again, while both workers are idle

    done = cluster.wait_for_status(job_id, FINISHED, 60)
    assert (done.status, done.error, done.attempt) == ("succeeded", None, 1)
    claimed = [w for w in workers if f"job {job_id} attempt 1: claimed" in w.log_text()]
    skipped = [w for w in workers if w not in claimed]
    assert len(claimed) == 1 and len(skipped) == 1
    # The other copy was refused by the claim and wrote nothing.
    skipped[0].wait_for_log(rf"job {job_id}: not claimable", 30)
    assert "Task ganserve.train" in skipped[0].log_text()
    assert "'skipped'" in skipped[0].log_text()
    [version] = cluster.versions()
    assert (version.job_id, version.step) == (job_id, 300)
    statuses = [e.data for e in cluster.events(job_id) if e.type == "status"]
    assert statuses == [
        {"status": "running", "attempt": 1},
        {"status": "succeeded", "attempt": 1},
    ]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, without persistence, which the test restarts."""
    with EmbeddedRedis(tmp_path / "private-redis", persistent=False) as server:
        yield server


def test_jobs_whose_messages_a_redis_restart_lost_are_sent_again_and_run_once(
    private_redis: EmbeddedRedis, cluster_factory: Callable[[str, str], Cluster]
) -> None:
    cluster = cluster_factory(private_redis.url, "ganserve-restart")
    names = [f"restart-{i}" for i in range(3)]
    job_ids = [cluster.submit(name, steps=30) for name in names]
    client = redis.Redis.from_url(private_redis.url)
    try:
        assert pending_job_ids(client, cluster.queue_name) == set(job_ids)
        private_redis.restart()  # no persistence: every queued message is gone
        assert pending_job_ids(client, cluster.queue_name) == set()
    finally:
        client.close()

    reaper = cluster.reaper(requeue_after_s=1.0)
    assert reaper.run_once() == []  # sent less than a second ago: not yet
    later = utcnow() + timedelta(seconds=2)
    actions = reaper.run_once(now=later)
    assert sorted((a.kind, a.job.id) for a in actions) == sorted(
        ("resent", job_id) for job_id in job_ids
    )
    assert reaper.run_once(now=later + timedelta(seconds=2)) == []  # in the queue again now

    worker = cluster.start_worker("w1")
    for job_id in job_ids:
        done = cluster.wait_for_status(job_id, FINISHED, 60)
        assert (done.status, done.error, done.attempt) == ("succeeded", None, 1)
    for name, job_id in zip(names, job_ids, strict=True):
        [version] = cluster.versions(name)
        assert version.job_id == job_id
    time.sleep(0.5)  # a duplicate would be received right after the last job
    assert "not claimable" not in worker.log_text()
    assert worker.log_text().count("Task ganserve.train") == 2 * len(job_ids)  # received+done
