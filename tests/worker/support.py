"""Shared by the worker tests: the tiny job config and readers of a job's events."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from ganserve.gan.config import TrainConfig
from ganserve.store.events import JobEvent, read_events_sync

MakeJob = Callable[..., str]

# About a second of CPU: 30 steps of the reference MLP on 8x8 digits.
TINY = TrainConfig(
    dataset="digits",
    steps=30,
    batch_size=32,
    checkpoint_every=10,
    sample_every=10,
    device="cpu",
)
# Runs far longer than any test waits; tests stop it by cancelling or superseding it.
ENDLESS = {"steps": 1_000_000, "checkpoint_every": 1_000_000, "sample_every": 1_000_000}


def steps_of(events: list[JobEvent], type_: str) -> list[int]:
    return [event.data["step"] for event in events if event.type == type_]


def wait_for_event(
    client: redis.Redis, job_id: str, type_: str, timeout: float = 30.0
) -> list[JobEvent]:
    """Poll the job's stream until an event of `type_` appears; all events so far."""
    deadline = time.monotonic() + timeout
    while True:
        events = read_events_sync(client, job_id)
        if any(event.type == type_ for event in events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"no {type_} event within {timeout} s; got {events}")
        time.sleep(0.02)
