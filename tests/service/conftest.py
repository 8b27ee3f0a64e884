"""An API on a temporary data dir (SQLite) with a real Redis, driven in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, training_queue: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        database_url=None,
        training_queue=training_queue,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
