"""Job events on Redis Streams: the worker appends, the API replays and follows them.

One stream per job, `ganserve:job:<id>:events`. Entry ids are Redis stream ids
("1732612345678-0"), which the API uses as SSE event ids, so a client reconnecting with
`Last-Event-ID` continues right after the last event it saw. Each entry has two fields:
`type` (preparing | progress | evaluation | checkpoint | preview | model | warning | status) and
`data` (JSON).
A `status` event whose status is terminal is the last event of a job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
EVENT_TYPES = (
    "preparing", "progress", "evaluation", "checkpoint", "preview", "model", "warning", "status",
)  # fmt: skip
STREAM_MAXLEN = 10_000  # per job, approximate; progress is throttled well below this
STREAM_TTL_S = 30 * 24 * 3600


def stream_key(job_id: str) -> str:
    return f"ganserve:job:{job_id}:events"


@dataclass(frozen=True)
class JobEvent:
    id: str  # Redis stream id, used as the SSE id
    type: str
    data: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        return self.type == "status" and self.data.get("status") in TERMINAL_STATUSES


def _decode(entry_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    def text(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else value

    decoded = {text(k): text(v) for k, v in fields.items()}
    return JobEvent(text(entry_id), decoded.get("type", ""), json.loads(decoded.get("data", "{}")))


class EventPublisher:
    """Appends events to a job's stream (synchronous: used by the worker)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> EventPublisher:
        return cls(redis.Redis.from_url(url))

    def publish(self, job_id: str, type_: str, data: dict[str, Any]) -> str:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        key = stream_key(job_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(key, {"type": type_, "data": json.dumps(data)}, maxlen=STREAM_MAXLEN,
                  approximate=True)  # fmt: skip
        pipe.expire(key, STREAM_TTL_S)
        entry_id = pipe.execute()[0]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def close(self) -> None:
        self.client.close()


async def read_events(
    client: redis.asyncio.Redis, job_id: str, after: str = "0-0", block_ms: int | None = None
) -> list[JobEvent]:
    """Events after the stream id `after`; with block_ms, wait that long for new ones."""
    result: Any = await client.xread({stream_key(job_id): after}, count=500, block=block_ms)
    events: list[JobEvent] = []
    for _key, entries in result or []:
        events.extend(_decode(entry_id, fields) for entry_id, fields in entries)
    return events


def read_events_sync(client: redis.Redis, job_id: str, after: str = "0-0") -> list[JobEvent]:
    """All events after `after`, without waiting (tests and the CLI)."""
    entries: Any = client.xrange(stream_key(job_id), min=f"({after}" if after != "0-0" else "-")
    return [_decode(entry_id, fields) for entry_id, fields in entries or []]
