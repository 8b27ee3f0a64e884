"""The whole service as a user meets it: real Redis, a Celery worker process and uvicorn.

One stack per database backend (SQLite file, and PostgreSQL when configured) for the
module; every process is started by the fixture and stopped by PID at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.classifiers import seed_classifiers
from tests.helpers.databases import BACKENDS, fresh_database
from tests.helpers.processes import (
    ManagedProcess,
    free_port,
    start_celery_worker,
    start_uvicorn,
)

APP = "ganserve.service.app:create_app"


@dataclass
class Stack:
    env: dict[str, str]
    data_dir: Path
    logs: Path
    port: int = 0
    api: ManagedProcess | None = None
    worker: ManagedProcess | None = None
    _restarts: int = field(default=0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_api(self) -> None:
        self.port = free_port()
        log = self.logs / f"api-{self._restarts}.log"
        self.api = start_uvicorn(APP, self.port, self.env, log, factory=True, ready_path="/readyz")

    def restart_api(self) -> None:
        assert self.api is not None
        self.api.stop()
        self._restarts += 1
        self.start_api()

    def start_worker(self, name: str = "w1") -> ManagedProcess:
        self.worker = start_celery_worker(
            "ganserve.worker.app", self.env, self.logs / f"worker-{name}.log", f"{name}@e2e",
            extra_args=["-Q", self.env["GANSERVE_TRAINING_QUEUE"]],
        )  # fmt: skip
        return self.worker

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        for process in (self.api, self.worker):
            if process is not None:
                process.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
) -> Iterator[Stack]:
    backend = str(request.param)
    root = tmp_path_factory.mktemp(f"e2e-{backend}")
    queue = f"ganserve-e2e-{root.name}"
    with ExitStack() as cleanup:
        db_url = cleanup.enter_context(fresh_database(backend, root))
        logs = root / "logs"
        logs.mkdir()
        env = {
            "GANSERVE_DATA_DIR": str(root / "data"),
            "REDIS_URL": redis_url,
            "DATABASE_URL": db_url,
            "GANSERVE_TRAINING_QUEUE": queue,
            "GANSERVE_PROGRESS_INTERVAL_S": "0.2",
            "GANSERVE_WORKER_DEVICE": "cpu",
            "GANSERVE_API_KEYS": "",
        }
        stack = Stack(env=env, data_dir=root / "data", logs=logs)
        seed_classifiers(stack.data_dir)
        cleanup.callback(stack.stop)
        stack.start_api()  # applies the migrations before the worker starts
        stack.start_worker()
        yield stack


def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll probe() until it returns something truthy; fail naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_status(client: httpx.Client, job_id: str, statuses: set[str], timeout: float) -> dict:
    def probe() -> dict | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    result: dict = wait_for(probe, timeout, f"job {job_id} to reach {statuses}")
    return result
