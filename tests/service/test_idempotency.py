"""Idempotency-Key on POST /v1/jobs: a retried submit returns the first job, nothing new queued."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from ganserve.settings import Settings


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_same_key_and_spec_returns_the_first_job(
    client: TestClient, settings: Settings, broker: redis.Redis
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/v1/jobs", json={"name": "once", "steps": 5}, headers=key)
    assert first.status_code == 202, first.text
    # The same spec written differently (key order, a default spelled out) is the same request.
    again = client.post("/v1/jobs", json={"steps": 5, "name": "once", "seed": 0}, headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert broker.llen(settings.training_queue) == 1
    assert client.get("/v1/jobs").json()["total"] == 1


def test_same_key_with_another_spec_is_409(client: TestClient) -> None:
    key = {"Idempotency-Key": "reused-key"}
    assert client.post("/v1/jobs", json={"steps": 5}, headers=key).status_code == 202
    response = client.post("/v1/jobs", json={"steps": 6}, headers=key)
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["detail"]


def test_without_a_key_every_submit_is_a_new_job(client: TestClient) -> None:
    ids = {client.post("/v1/jobs", json={"steps": 5}).json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_a_malformed_key_is_422_naming_the_header(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"steps": 5}, headers={"Idempotency-Key": "a b"})
    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"
