"""A worker killed outright (SIGKILL): its job resumes elsewhere, or fails once out of attempts."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.reliability.conftest import FINISHED, Cluster, wait_for

pytestmark = pytest.mark.e2e

STEPS = 400  # a few seconds of CPU in one worker
EVERY = 100


def test_a_killed_workers_job_resumes_from_its_last_checkpoint_on_another(
    cluster: Cluster,
) -> None:
    # The API's own reaper (a pass every 0.5 s) takes the job back once the 3 s lease expires.
    with ThreadPoolExecutor(max_workers=2) as pool:
        api_started = pool.submit(cluster.start_api, GANSERVE_REAPER_INTERVAL_S="0.5")
        cluster.start_workers("w1", "w2")  # the second one stands by
        api = api_started.result()
    job_id = cluster.submit(steps=STEPS, checkpoint_every=EVERY, sample_every=EVERY)
    wait_for(lambda: len(cluster.checkpoint_steps(job_id)) >= 2, 60, "a second checkpoint")
    first = cluster.holder(job_id)
    first.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    killed_at = cluster.checkpoint_steps(job_id)[-1]
    assert EVERY * 2 <= killed_at < STEPS
    job = cluster.job(job_id)
    assert (job.status, job.attempt) == ("running", 1)  # nobody knows yet

    done = cluster.wait_for_status(job_id, FINISHED, 60)
    assert (done.status, done.error, done.step, done.attempt) == ("succeeded", None, STEPS, 2)
    [second] = [worker for worker in cluster.workers.values() if worker is not first]
    # The second attempt resumed at the step the first one had saved, not from zero.
    second.wait_for_log(rf"resuming from step {killed_at}\b", 5)
    events = cluster.events(job_id)
    restart = next(i for i, e in enumerate(events) if e.data.get("attempt") == 2)
    later = events[restart:]
    progress = [e.data["step"] for e in later if e.type == "progress"]
    checkpoints = [e.data["step"] for e in later if e.type == "checkpoint"]
    assert progress and progress[0] > killed_at
    assert checkpoints == list(range(killed_at + EVERY, STEPS + 1, EVERY))
    [version] = cluster.versions()
    assert (version.job_id, version.step) == (job_id, STEPS)
    assert f"job {job_id}: worker" in api.log_text() and "requeued" in api.log_text()


def test_a_job_out_of_attempts_fails_with_the_reason(cluster: Cluster) -> None:
    worker = cluster.start_worker("w1")
    job_id = cluster.create_job(max_attempts=1, steps=STEPS, checkpoint_every=EVERY)
    cluster.queue.enqueue(job_id)
    wait_for(lambda: cluster.checkpoint_steps(job_id), 60, "a checkpoint")
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)

    reaper = cluster.reaper()
    [action] = wait_for(reaper.run_once, 10, "the lease to expire", every=0.25)
    job = cluster.job(job_id)
    assert (action.kind, job.status, job.attempt) == ("failed", "failed", 1)
    assert job.error is not None and "worker lost: attempt 1 of 1" in job.error
    assert "w1@reliability" in job.error
    assert cluster.versions() == []
