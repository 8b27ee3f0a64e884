"""End to end: a real Celery worker subprocess takes a job from the real Redis and trains it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ganserve.service.jobs.queue import TrainingQueue
from ganserve.settings import Settings
from ganserve.store import Store, jobs, registry
from ganserve.store.tables import Job
from tests.helpers.classifiers import seed_classifiers
from tests.helpers.processes import free_port, start_celery_worker
from tests.worker.support import TINY

pytestmark = pytest.mark.e2e


def wait_until_finished(store: Store, job_id: str, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        with store.session() as session:
            job = jobs.get_job(session, job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {job.status} at step {job.step} after {timeout} s")
        time.sleep(0.2)


def test_a_worker_process_trains_an_enqueued_job_once(
    tmp_path: Path, redis_url: str, training_queue: str
) -> None:
    data_dir = tmp_path / "data"
    seed_classifiers(data_dir)
    store = Store.from_settings(Settings(data_dir=data_dir, database_url=None))
    with store.session() as session:
        job_id = jobs.create_job(session, "e2e-digits", TINY.to_dict(), TINY.steps).id
    env = {
        "GANSERVE_DATA_DIR": str(data_dir),
        "DATABASE_URL": "",  # the SQLite file in the data dir, like the test's own store
        "REDIS_URL": redis_url,
        "GANSERVE_TRAINING_QUEUE": training_queue,
        "GANSERVE_WORKER_METRICS_PORT": str(metrics_port := free_port()),
        "GANSERVE_LOG_FORMAT": "json",
    }
    queue = TrainingQueue(redis_url, training_queue)
    try:
        with start_celery_worker(
            "ganserve.worker.app", env, tmp_path / "worker.log", f"e2e-{training_queue}@%h"
        ) as worker:
            queue.enqueue(job_id)
            queue.enqueue(job_id)  # a duplicate delivery must not train or register twice
            job = wait_until_finished(store, job_id, timeout=120)
            assert (job.status, job.error, job.step) == ("succeeded", None, TINY.steps)
            worker.wait_for_log(r"not claimable", timeout=30)
            # the worker's own Prometheus endpoint saw the training
            scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            values = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(scrape)
                for sample in family.samples
            }
            assert values[("ganserve_worker_steps_total", ())] == TINY.steps
            assert values[("ganserve_worker_jobs_total", (("outcome", "succeeded"),))] == 1
            assert values[("ganserve_worker_jobs_total", (("outcome", "skipped"),))] == 1
            assert values[("ganserve_worker_evaluation_seconds_count", ())] == 1
        # logs are JSON lines that carry the job id, so one job can be followed across processes
        lines = [json.loads(line) for line in worker.log_text().splitlines()
                 if line.startswith("{")]  # fmt: skip
        assert any(line.get("job_id") == job_id and line.get("attempt") == 1 for line in lines)
        with store.session() as session:
            [version] = registry.get_model(session, "e2e-digits").versions
        assert (version.version, version.job_id, job.model_version) == (1, job_id, 1)
    finally:
        queue.close()
        store.close()
