"""Fixtures shared by every test layer: a real Redis for the session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.helpers.processes import redis_url_for_tests


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """$GANSERVE_TEST_REDIS_URL (CI: the machine's Redis) or a private embedded server."""
    with redis_url_for_tests(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def training_queue(redis_url: str) -> Iterator[str]:
    """A queue name of this test's own, deleted afterwards (the Redis may be shared)."""
    name = f"ganserve-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(name, *client.keys(f"_kombu.binding.{name}*"))
    finally:
        client.close()
