"""What the reaper reads from the broker: `pending_job_ids` against a real Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import kombu
import pytest
import redis

from ganserve.service.jobs.queue import TrainingQueue, pending_job_ids, train_message_job_id

A, B, C = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture
def queue(redis_url: str, training_queue: str) -> Iterator[TrainingQueue]:
    queue = TrainingQueue(redis_url, training_queue)
    yield queue
    queue.close()


@pytest.fixture
def client(redis_url: str, training_queue: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.delete(*(f"{training_queue}\x06\x16{step}" for step in (3, 6, 9)))
    client.close()


def test_waiting_messages_are_found_at_every_priority(
    queue: TrainingQueue, client: redis.Redis, training_queue: str
) -> None:
    assert pending_job_ids(client, training_queue) == set()
    queue.enqueue(A)
    queue.celery.send_task("ganserve.train", args=[B], queue=training_queue, priority=9)
    queue.celery.send_task("some.other.task", args=[C], queue=training_queue)
    assert pending_job_ids(client, training_queue) == {A, B}
    assert queue.pending_job_ids() == {A, B}
    assert pending_job_ids(client, "another-queue") == set()


def test_delivered_unacknowledged_messages_are_found_while_recent(
    queue: TrainingQueue, client: redis.Redis, redis_url: str, training_queue: str
) -> None:
    queue.enqueue(A)
    queue.enqueue(B)
    before = time.time()
    with kombu.Connection(redis_url) as connection:
        consumer = connection.SimpleQueue(training_queue)
        message = consumer.get(timeout=5)  # delivered, not acknowledged: a worker holds it
        [held] = [job_id for job_id in (A, B) if job_id in str(message.headers["argsrepr"])]
        assert client.llen(training_queue) == 1
        assert pending_job_ids(client, training_queue) == {A, B}
        assert pending_job_ids(client, training_queue, unacked_since=before - 60) == {A, B}
        # Delivered before the cutoff and still unclaimed: its worker is gone.
        late = pending_job_ids(client, training_queue, unacked_since=time.time() + 60)
        assert late == {A, B} - {held}
        message.ack()
        assert pending_job_ids(client, training_queue) == {A, B} - {held}
        consumer.close()


def test_foreign_and_malformed_messages_are_ignored() -> None:
    assert train_message_job_id(b"not json") is None
    assert train_message_job_id(b"[1, 2]") is None
    assert train_message_job_id(b'{"headers": {"task": "ganserve.train"}}') is None

    def message(task: str) -> str:
        return json.dumps({"headers": {"task": task, "argsrepr": repr([A])}})

    assert train_message_job_id(message("ganserve.train")) == A  # no body: the args' repr
    assert train_message_job_id(message("other")) is None
