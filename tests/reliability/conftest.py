"""A cluster per test: SQLite in tmp_path, a Redis, Celery worker processes, maybe an API.

Every process is started by the test and stopped by PID (its own process group) at the end.
The test's own `Store` and `TrainingQueue` share the workers' database and queue, and its
`Reaper` is the one the API runs, so a test can run a reaper pass exactly when it wants one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from ganserve.gan.checkpoint import list_checkpoints
from ganserve.service.jobs.queue import UNACKED_INDEX_KEY, UNACKED_KEY, TrainingQueue
from ganserve.service.operations.reaper import Reaper
from ganserve.settings import Settings
from ganserve.store import Job, Store, jobs, registry
from ganserve.store.events import JobEvent, read_events_sync, stream_key
from tests.helpers.classifiers import seed_classifiers
from tests.helpers.processes import ManagedProcess, free_port, start_celery_worker, start_uvicorn
from tests.worker.support import TINY

APP = "ganserve.service.app:create_app"
LEASE_S = 3.0  # short, so a killed worker's job is taken back within seconds
FINISHED = ("succeeded", "failed", "cancelled")
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@dataclass
class Cluster:
    root: Path
    redis_url: str
    queue_name: str
    env: dict[str, str]
    settings: Settings
    store: Store
    queue: TrainingQueue
    workers: dict[str, ManagedProcess] = field(default_factory=dict)
    api: ManagedProcess | None = None
    job_ids: list[str] = field(default_factory=list)

    # --- processes -----------------------------------------------------------------------

    def start_worker(self, name: str) -> ManagedProcess:
        worker = start_celery_worker(
            "ganserve.worker.app",
            self.env,
            self.root / "logs" / f"worker-{name}.log",
            f"{name}@reliability",
            extra_args=["-Q", self.queue_name],
        )
        self.workers[name] = worker
        return worker

    def start_workers(self, *names: str) -> list[ManagedProcess]:
        """Start several workers at once (each takes seconds to import torch and Celery)."""
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            return list(pool.map(self.start_worker, names))

    def holder(self, job_id: str) -> ManagedProcess:
        """The worker process holding the job's lease."""
        worker = self.job(job_id).worker or ""
        [name] = [name for name in self.workers if worker.startswith(f"{name}@")]
        return self.workers[name]

    def start_api(self, **env: str) -> ManagedProcess:
        port = free_port()
        self.api = start_uvicorn(
            APP,
            port,
            {**self.env, **env},
            self.root / "logs" / "api.log",
            factory=True,
            ready_path="/readyz",
        )
        return self.api

    def stop(self) -> None:
        """Stop every process (in parallel: a worker's warm shutdown takes a moment)."""
        processes = [p for p in [*self.workers.values(), self.api] if p is not None]
        if processes:
            with ThreadPoolExecutor(max_workers=len(processes)) as pool:
                list(pool.map(lambda process: process.stop(), processes))

    # --- jobs ----------------------------------------------------------------------------

    def create_job(self, name: str = "digits-gan", max_attempts: int = 3, **changes: Any) -> str:
        config = TINY.replace(**changes)
        with self.store.session() as session:
            job = jobs.create_job(
                session, name, config.to_dict(), config.steps, max_attempts=max_attempts
            )
        self.job_ids.append(job.id)
        return job.id

    def submit(self, name: str = "digits-gan", max_attempts: int = 3, **changes: Any) -> str:
        """Create a job and send its task, as the API does."""
        job_id = self.create_job(name, max_attempts, **changes)
        self.queue.enqueue(job_id)
        return job_id

    def job(self, job_id: str) -> Job:
        with self.store.session() as session:
            return jobs.get_job(session, job_id)

    def wait_for_status(self, job_id: str, statuses: tuple[str, ...], timeout: float) -> Job:
        def probe() -> Job | None:
            job = self.job(job_id)
            return job if job.status in statuses else None

        return wait_for(probe, timeout, f"job {job_id} to be {'/'.join(statuses)}")

    def checkpoint_steps(self, job_id: str) -> list[int]:
        return [step for step, _ in list_checkpoints(self.store.artifacts.checkpoints_dir(job_id))]

    def versions(self, name: str = "digits-gan") -> list[Any]:
        """The model's registered versions ([] if none)."""
        with self.store.session() as session:
            if not any(model.name == name for model in registry.list_models(session)):
                return []
            return list(registry.get_model(session, name).versions)

    def events(self, job_id: str) -> list[JobEvent]:
        client = redis.Redis.from_url(self.redis_url)
        try:
            return read_events_sync(client, job_id)
        finally:
            client.close()

    def reaper(self, **changes: Any) -> Reaper:
        settings = self.settings.model_copy(update=changes)
        return Reaper(self.store, self.queue, settings.requeue_after_s)

    # --- cleanup -------------------------------------------------------------------------

    def forget_broker_state(self) -> None:
        """Delete this test's event streams and its messages left unacknowledged by killed
        workers (the Redis may be shared with other tests)."""
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
        try:
            if self.job_ids:
                client.delete(*(stream_key(job_id) for job_id in self.job_ids))
            for tag, entry in client.hscan_iter(UNACKED_KEY):
                try:
                    routing_key = json.loads(entry)[2]
                except (ValueError, IndexError, TypeError):
                    continue
                if routing_key == self.queue_name:
                    client.hdel(UNACKED_KEY, tag)
                    client.zrem(UNACKED_INDEX_KEY, tag)
        except redis.ConnectionError:
            pass  # a private Redis the test already stopped
        finally:
            client.close()


def make_cluster(root: Path, redis_url: str, queue: str) -> Cluster:
    data_dir = root / "data"
    seed_classifiers(data_dir)
    env = {
        "GANSERVE_DATA_DIR": str(data_dir),
        "DATABASE_URL": "",  # the SQLite file in the data dir, like the test's own store
        "REDIS_URL": redis_url,
        "GANSERVE_TRAINING_QUEUE": queue,
        "GANSERVE_PROGRESS_INTERVAL_S": "0.2",
        "GANSERVE_WORKER_DEVICE": "cpu",
        "GANSERVE_JOB_LEASE_S": str(LEASE_S),
        "GANSERVE_API_KEYS": "",
        "GANSERVE_LOG_FORMAT": "text",
        "OMP_NUM_THREADS": "1",  # two workers on a small machine must not fight for cores
    }
    settings = Settings(
        data_dir=data_dir,
        database_url=None,
        redis_url=redis_url,
        training_queue=queue,
        job_lease_s=LEASE_S,
    )
    store = Store.from_settings(settings)  # creates the database before any process starts
    return Cluster(
        root=root,
        redis_url=redis_url,
        queue_name=queue,
        env=env,
        settings=settings,
        store=store,
        queue=TrainingQueue(redis_url, queue),
    )


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[[str, str], Cluster]]:
    """Build clusters on a given Redis and queue; everything is stopped afterwards."""
    with ExitStack() as cleanup:
        built: list[Cluster] = []

        def build(redis_url: str, queue: str) -> Cluster:
            cluster = make_cluster(tmp_path / f"cluster-{len(built)}", redis_url, queue)
            built.append(cluster)
            cleanup.callback(cluster.store.close)
            cleanup.callback(cluster.queue.close)
            cleanup.callback(cluster.forget_broker_state)
            cleanup.callback(cluster.stop)  # callbacks run last-in first-out: stop first
            return cluster

        yield build


@pytest.fixture
def cluster(
    cluster_factory: Callable[[str, str], Cluster], redis_url: str, training_queue: str
) -> Cluster:
    """A cluster on the session's Redis and this test's own queue (no process started yet)."""
    return cluster_factory(redis_url, training_queue)
