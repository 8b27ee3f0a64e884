"""GET /v1/jobs/{id}/events: replay, resume after Last-Event-ID, end at the terminal status.

Events are published with the worker's own `EventPublisher`; the TestClient reads each
stream to its end, so every stream here must end by itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from ganserve.cli.sse import ServerEvent, iter_events
from ganserve.service.jobs.actions import require_job
from ganserve.service.jobs.events import parse_last_event_id, status_event_data
from ganserve.store import Store
from ganserve.store import jobs as job_store
from ganserve.store.events import EventPublisher, stream_key


@pytest.fixture
def store(client: TestClient) -> Store:
    store: Store = client.app.state.context.store  # type: ignore[attr-defined]
    return store


@pytest.fixture
def publisher(redis_url: str, store: Store) -> Iterator[EventPublisher]:
    """The worker's publisher; deletes the event streams of this test's jobs afterwards."""
    publisher = EventPublisher(redis.Redis.from_url(redis_url))
    yield publisher
    with store.session() as session:
        ids = [job.id for job in job_store.list_jobs(session, limit=1000)[0]]
    if ids:
        publisher.client.delete(*(stream_key(job_id) for job_id in ids))
    publisher.close()


def submit(client: TestClient, **spec: Any) -> str:
    response = client.post("/v1/jobs", json={"steps": 30, **spec})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def start(store: Store, job_id: str) -> int:
    with store.session() as session:
        attempt = job_store.claim_job(session, job_id, "test-worker", lease_s=60)
    assert attempt is not None
    return attempt


def read_stream(
    client: TestClient, job_id: str, headers: dict[str, str] | None = None, **params: str
) -> list[ServerEvent]:
    with client.stream(
        "GET", f"/v1/jobs/{job_id}/events", headers=headers, params=params
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        return list(iter_events(response))


def publish_run(publisher: EventPublisher, job_id: str, end: str = "succeeded") -> list[str]:
    """A worker's events: progress, checkpoint, model, then a terminal status; their ids."""
    ids = [publisher.publish(job_id, "status", {"status": "running", "attempt": 1})]
    for step in (10, 20, 30):
        data = {"step": step, "total_steps": 30, "losses": {"loss_d": 0.5, "loss_g": 1.0}}
        ids.append(publisher.publish(job_id, "progress", data))
    ids.append(publisher.publish(job_id, "checkpoint", {"step": 30}))
    ids.append(publisher.publish(job_id, "model", {"name": "digits-mlp", "version": 1}))
    ids.append(publisher.publish(job_id, "status", {"status": end, "error": None}))
    return ids


def test_stream_replays_every_event_in_order_and_ends_at_the_terminal_status(
    client: TestClient, store: Store, publisher: EventPublisher
) -> None:
    job_id = submit(client)
    ids = publish_run(publisher, job_id)
    publisher.publish(job_id, "warning", {"message": "after the end: never sent"})
    events = read_stream(client, job_id)
    assert [e.id for e in events] == ids
    assert [e.event for e in events] == [
        "status", "progress", "progress", "progress", "checkpoint", "model", "status",
    ]  # fmt: skip
    assert [json.loads(e.data).get("step") for e in events[1:4]] == [10, 20, 30]
    assert json.loads(events[1].data)["losses"] == {"loss_d": 0.5, "loss_g": 1.0}
    assert json.loads(events[-1].data)["status"] == "succeeded"


def test_reconnecting_with_last_event_id_returns_only_later_events(
    client: TestClient, publisher: EventPublisher
) -> None:
    job_id = submit(client)
    ids = publish_run(publisher, job_id, end="failed")
    later = read_stream(client, job_id, headers={"Last-Event-ID": ids[2]})
    assert [e.id for e in later] == ids[3:]
    assert json.loads(later[-1].data)["status"] == "failed"
    by_query = read_stream(client, job_id, last_event_id=ids[4])
    assert [e.id for e in by_query] == ids[5:]


def test_a_malformed_last_event_id_is_a_422_problem(client: TestClient) -> None:
    job_id = submit(client)
    response = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "x; FLUSHALL"})
    assert response.status_code == 422
    assert response.json()["field"] == "last_event_id"


def test_a_queued_job_cancelled_by_the_api_ends_its_stream(
    client: TestClient, publisher: EventPublisher
) -> None:
    job_id = submit(client)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    events = read_stream(client, job_id)
    assert [e.event for e in events] == ["status"]
    assert events[0].id is not None  # the API's own event, from the stream
    data = json.loads(events[0].data)
    assert data["status"] == "cancelled" and data["total_steps"] == 30


def test_a_finished_job_without_a_terminal_event_gets_one_from_the_database(
    client: TestClient, store: Store, publisher: EventPublisher
) -> None:
    job_id = submit(client)
    attempt = start(store, job_id)
    first = publisher.publish(job_id, "progress", {"step": 5, "total_steps": 30, "losses": {}})
    with store.session() as session:  # a worker that died before publishing its end
        job_store.finish_job(session, job_id, attempt, "failed", error="worker lost")
    began = time.monotonic()
    events = read_stream(client, job_id)
    assert time.monotonic() - began < 10
    assert [e.event for e in events] == ["progress", "status"]
    assert events[0].id == first
    # synthesized, without an id: the client's last event id stays at the real event
    assert events[1].id == first
    assert json.loads(events[1].data) == {
        "status": "failed", "step": 0, "total_steps": 30, "error": "worker lost", "model": None,
    }  # fmt: skip


def test_expired_events_of_a_cancelled_job_still_end_the_stream(
    client: TestClient, publisher: EventPublisher
) -> None:
    job_id = submit(client)
    client.post(f"/v1/jobs/{job_id}/cancel")
    publisher.client.delete(stream_key(job_id))  # the stream expired
    events = read_stream(client, job_id)
    assert [(e.event, json.loads(e.data)["status"]) for e in events] == [("status", "cancelled")]


def test_status_event_data_names_the_model(
    client: TestClient, store: Store, publisher: EventPublisher
) -> None:
    job_id = submit(client)
    attempt = start(store, job_id)
    with store.session() as session:
        job_store.finish_job(
            session, job_id, attempt, "succeeded", model_name="digits-mlp", model_version=3
        )
    data = status_event_data(require_job(store, job_id))
    assert data["status"] == "succeeded" and data["model"] == {"name": "digits-mlp", "version": 3}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "0-0"), ("", "0-0"), ("0", "0"), ("1732612345678-0", "1732612345678-0")],
)
def test_parse_last_event_id(value: str | None, expected: str) -> None:
    assert parse_last_event_id(value) == expected


@pytest.mark.parametrize("value", ["abc", "1-2-3", "-1", "$", ">", "1 2"])
def test_parse_last_event_id_refuses_what_is_not_a_stream_id(value: str) -> None:
    from ganserve.service.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        parse_last_event_id(value)


def test_stream_follows_events_published_while_it_is_open(
    client: TestClient, publisher: EventPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ganserve.service.routes.jobs.PING_S", 0.3)
    job_id = submit(client)

    def worker() -> None:
        time.sleep(0.5)
        publisher.publish(job_id, "progress", {"step": 1, "total_steps": 30, "losses": {}})
        time.sleep(0.5)
        publisher.publish(job_id, "status", {"status": "cancelled", "error": None})

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            text = response.read().decode()
    finally:
        thread.join()
    assert "event: progress" in text and "event: status" in text
    assert text.index("event: progress") < text.index("event: status")
    assert ": ping" in text  # keep-alive comments while waiting
