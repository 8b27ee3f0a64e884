"""A job's events as Server-Sent Events: replay its Redis stream, follow it, end at the end.

`job_event_stream` yields one SSE event per stream entry (`id` = stream id, `event` = type,
`data` = JSON). It ends after a terminal `status` event. A job can also end without one in
its stream (a queued job cancelled while Redis was down, a stream expired or trimmed, a
worker that died before publishing): when the stream is quiet the database is consulted,
and a finished job gets a final `status` event built from its row (without an id, so a
reconnecting client resumes after the last real event).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import redis.asyncio
from redis.exceptions import RedisError
from sse_starlette import ServerSentEvent

from ganserve.service.errors import InvalidInputError
from ganserve.store import Job, Store
from ganserve.store import jobs as job_store
from ganserve.store.errors import RecordNotFoundError
from ganserve.store.events import (
    EVENT_TYPES,
    STREAM_MAXLEN,
    STREAM_TTL_S,
    JobEvent,
    read_events,
    stream_key,
)

log = logging.getLogger(__name__)

PING_S = 15  # seconds between keep-alive comments
BLOCK_MS = 1000  # one blocking XREAD; bounds how long a disconnect goes unnoticed
DB_POLL_S = 5.0  # while the stream is quiet, how often to ask the database if the job ended
TERMINAL_GRACE_MS = 1000  # after the database says "finished", wait this long for the event
STREAM_ID_PATTERN = r"^[0-9]{1,20}(-[0-9]{1,20})?$"  # a Redis stream id, as events carry
_STREAM_ID = re.compile(STREAM_ID_PATTERN)


def parse_last_event_id(value: str | None) -> str:
    """The stream id to resume after ('0-0' = from the start); 422 if malformed."""
    if value is None or value.strip() == "":
        return "0-0"
    value = value.strip()
    if not _STREAM_ID.fullmatch(value):
        raise InvalidInputError(
            f"invalid event id {value!r}: expected a stream id such as '1732612345678-0', "
            "as sent in an event's id field",
            field="last_event_id",
        )
    return value


def status_event_data(job: Job) -> dict[str, Any]:
    """The data of a `status` event describing `job` as it is now."""
    model = None
    if job.model_name is not None and job.model_version is not None:
        model = {"name": job.model_name, "version": job.model_version}
    return {
        "status": job.status,
        "step": job.step,
        "total_steps": job.total_steps,
        "error": job.error,
        "model": model,
    }


async def publish_event(
    client: redis.asyncio.Redis, job_id: str, type_: str, data: dict[str, Any]
) -> str:
    """Append an event to the job's stream (as store.events.EventPublisher does); its id."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}; valid: {', '.join(EVENT_TYPES)}")
    key = stream_key(job_id)
    async with client.pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"type": type_, "data": json.dumps(data)}, maxlen=STREAM_MAXLEN,
                  approximate=True)  # fmt: skip
        pipe.expire(key, STREAM_TTL_S)
        entry_id = (await pipe.execute())[0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def announce_status(client: redis.asyncio.Redis, job: Job) -> None:
    """Publish the job's status; a broker error is logged (readers fall back to the DB)."""
    try:
        await publish_event(client, job.id, "status", status_event_data(job))
    except (RedisError, OSError) as error:
        log.warning("could not publish status %s of job %s: %s", job.status, job.id, error)


def _load_job(store: Store, job_id: str) -> Job | None:
    with store.session() as session:
        try:
            return job_store.get_job(session, job_id)
        except RecordNotFoundError:
            return None


def _sse(event: JobEvent) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(event.data), event=event.type, id=event.id)


def _final(job: Job) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(status_event_data(job)), event="status")


async def job_event_stream(
    store: Store, client: redis.asyncio.Redis, job_id: str, after: str = "0-0"
) -> AsyncIterator[ServerSentEvent]:
    """The job's events after stream id `after`, then new ones as they come, until the end."""
    cursor = after
    block_ms: int | None = None  # the first read replays without waiting
    last_db_check = -math.inf
    finished: Job | None = None
    while True:
        try:
            events = await read_events(client, job_id, cursor, block_ms=block_ms)
        except (RedisError, OSError) as error:
            # End the stream; the client reconnects with Last-Event-ID and resumes.
            log.warning("event stream of job %s interrupted: %s", job_id, error)
            job = await anyio.to_thread.run_sync(_load_job, store, job_id)
            if job is not None and job.finished:
                yield _final(job)
            return
        for event in events:
            cursor = event.id
            yield _sse(event)
            if event.is_terminal:
                return
        block_ms = BLOCK_MS
        if events:
            continue
        if finished is not None:  # finished in the database; the grace read found no end
            yield _final(finished)
            return
        if time.monotonic() - last_db_check >= DB_POLL_S:
            last_db_check = time.monotonic()
            job = await anyio.to_thread.run_sync(_load_job, store, job_id)
            if job is None:  # deleted meanwhile
                return
            if job.finished:
                finished, block_ms = job, TERMINAL_GRACE_MS
