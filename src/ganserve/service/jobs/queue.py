"""Enqueue training by task name: the API never imports the worker (DESIGN §2).

Also reads what the broker holds, for the reaper: `pending_job_ids` lists the jobs whose
`ganserve.train` message waits in the queue or was delivered to a worker and not yet
acknowledged. It knows kombu's Redis layout: a queue is a Redis list per priority level
(`name`, `name\\x06\\x163`, ...) of JSON messages; a delivered, unacknowledged message sits in
the `unacked` hash (delivery tag -> [message, exchange, routing key]) with its delivery time
in the `unacked_index` sorted set.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable
from typing import Any, cast

import redis
from celery import Celery

TRAIN_TASK = "ganserve.train"

# kombu.transport.redis: priority queue separator, default priority steps, unacked keys.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
_SCAN_BATCH = 500
_JOB_ID = re.compile(r"\b[0-9a-f]{32}\b")


class TrainingQueue:
    """A Celery client that can only send; the task itself lives in ganserve.worker."""

    def __init__(self, broker_url: str, queue: str) -> None:
        self.queue = queue
        self.broker_url = broker_url
        self.celery = Celery("ganserve-api", broker=broker_url, set_as_current=False)
        self.celery.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
            broker_transport_options={"socket_timeout": 5, "socket_connect_timeout": 5},
        )
        self._redis: redis.Redis | None = None

    def enqueue(self, job_id: str) -> None:
        self.celery.send_task(TRAIN_TASK, args=[job_id], queue=self.queue)

    def pending_job_ids(self, unacked_since: float = -math.inf) -> set[str]:
        """`pending_job_ids` for this queue on this broker."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.broker_url, socket_timeout=5, socket_connect_timeout=5
            )
        return pending_job_ids(self._redis, self.queue, unacked_since=unacked_since)

    def close(self) -> None:
        self.celery.close()
        if self._redis is not None:
            self._redis.close()


def pending_job_ids(
    client: redis.Redis, queue: str, *, unacked_since: float = -math.inf
) -> set[str]:
    """Ids of the jobs whose train message the broker still holds for `queue`.

    Waiting messages count (every priority level); delivered but unacknowledged ones count
    when delivered at or after `unacked_since` (Unix time): one delivered long ago to a
    worker that never claimed the job belongs to a worker that died before it could.
    Unacknowledged messages are matched by job id whatever their queue (ids are unique).
    """
    found: set[str] = set()
    for key in queue_keys(queue):
        start = 0
        while True:
            batch = client.lrange(key, start, start + _SCAN_BATCH - 1)
            found.update(_ids(train_message_job_id(raw) for raw in batch))
            if len(batch) < _SCAN_BATCH:
                break
            start += _SCAN_BATCH
    index = client.zrangebyscore(UNACKED_INDEX_KEY, _score(unacked_since), "+inf")
    tags = cast(list[bytes], index)  # without withscores: just the members
    for offset in range(0, len(tags), _SCAN_BATCH):
        entries = client.hmget(UNACKED_KEY, tags[offset : offset + _SCAN_BATCH])
        found.update(_ids(_unacked_job_id(entry) for entry in entries))
    return found


def queue_keys(queue: str) -> list[str]:
    """The Redis lists holding `queue`'s waiting messages, one per priority level."""
    return [queue, *(f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS if step)]


def _score(value: float) -> str | float:
    return "-inf" if value == -math.inf else value


def _unacked_job_id(entry: bytes | str | None) -> str | None:
    """The job id of an `unacked` hash entry, [message, exchange, routing key] as JSON."""
    if entry is None:  # acknowledged between the two reads
        return None
    try:
        message = json.loads(entry)[0]
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    return _message_job_id(message)


def _ids(job_ids: Iterable[str | None]) -> set[str]:
    return {job_id for job_id in job_ids if job_id is not None}


def train_message_job_id(raw: bytes | str) -> str | None:
    """The job id a kombu JSON message of the `ganserve.train` task names; None otherwise."""
    try:
        return _message_job_id(json.loads(raw))
    except ValueError:
        return None


def _message_job_id(message: object) -> str | None:
    if not isinstance(message, dict):
        return None
    headers = message.get("headers")
    if not isinstance(headers, dict) or headers.get("task") != TRAIN_TASK:
        return None
    args = _body_args(message)
    if args and isinstance(args[0], str) and _JOB_ID.fullmatch(args[0]):
        return args[0]
    match = _JOB_ID.search(str(headers.get("argsrepr") or ""))
    return match.group(0) if match else None


def _body_args(message: dict[str, Any]) -> list[Any] | None:
    """The task's positional args from the message body (task protocol 2 or 1)."""
    try:
        body: Any = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = json.loads(body)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    if isinstance(decoded, list) and decoded and isinstance(decoded[0], list):
        return decoded[0]  # protocol 2: [args, kwargs, embed]
    if isinstance(decoded, dict) and isinstance(decoded.get("args"), list):
        return list(decoded["args"])  # protocol 1
    return None
