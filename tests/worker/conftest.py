"""Fixtures: a SQLite store in tmp_path, the session's real Redis, and tiny digits jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ganserve.settings import Settings
from ganserve.store import Store
from ganserve.store import jobs as store_jobs
from ganserve.store.events import EventPublisher, stream_key
from ganserve.worker.resources import WorkerResources
from tests.helpers.classifiers import seed_classifiers
from tests.worker.support import TINY, MakeJob


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Every progress report is written unless a test asks for throttling.
    seed_classifiers(tmp_path / "data")
    return Settings(
        data_dir=tmp_path / "data",
        database_url=None,  # the SQLite file in data_dir, whatever the environment says
        progress_interval_s=1e-6,
        worker_device="auto",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.from_settings(settings)
    yield store
    store.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def resources(settings: Settings, store: Store, redis_client: redis.Redis) -> WorkerResources:
    return WorkerResources(settings, store, EventPublisher(redis_client))


@pytest.fixture
def make_job(store: Store, redis_client: redis.Redis) -> Iterator[MakeJob]:
    """Create a queued job from TINY with `changes`; its event stream is deleted afterwards."""
    created: list[str] = []

    def make(name: str = "digits-gan", **changes: Any) -> str:
        config = TINY.replace(**changes)
        with store.session() as session:
            job = store_jobs.create_job(session, name, config.to_dict(), config.steps)
        created.append(job.id)
        return job.id

    yield make
    if created:
        redis_client.delete(*(stream_key(job_id) for job_id in created))
