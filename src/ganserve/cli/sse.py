"""A minimal Server-Sent Events reader over an httpx streaming response."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class ServerEvent:
    id: str | None
    event: str
    data: str


def iter_events(response: httpx.Response) -> Iterator[ServerEvent]:
    """Events as the server sends them (comments and pings skipped)."""
    event_id: str | None = None
    event, data = "message", list[str]()
    for line in response.iter_lines():
        if not line:
            if data:
                yield ServerEvent(event_id, event, "\n".join(data))
            event, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            event_id = value
