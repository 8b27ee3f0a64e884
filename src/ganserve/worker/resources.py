"""What one worker process holds: the store (DB engine + artifacts) and the event publisher.

Built on first use inside the process that runs tasks, never at import: a DB engine or a
Redis connection made before a fork would be shared by parent and child.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ganserve.settings import Settings
from ganserve.store import Store
from ganserve.store.events import EventPublisher
from ganserve.worker.errors import BrokerNotConfiguredError


@dataclass(frozen=True)
class WorkerResources:
    settings: Settings
    store: Store
    events: EventPublisher

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerResources:
        """Connect to the database (applying migrations) and to Redis for events."""
        if not settings.redis_url:
            raise BrokerNotConfiguredError(missing_broker_message())
        store = Store.from_settings(settings)
        return cls(settings, store, EventPublisher.from_url(settings.redis_url))

    def close(self) -> None:
        self.events.close()
        self.store.close()


class LazyResources:
    """WorkerResources built once, on the first `get()` in the current process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._resources: WorkerResources | None = None

    def get(self) -> WorkerResources:
        with self._lock:
            if self._resources is None:
                self._resources = WorkerResources.from_settings(self.settings)
            return self._resources

    def forget(self) -> None:
        """Drop (without closing) what a parent process built: for a freshly forked child."""
        with self._lock:
            self._resources = None

    def close(self) -> None:
        with self._lock:
            resources, self._resources = self._resources, None
        if resources is not None:
            resources.close()


def missing_broker_message() -> str:
    return (
        "REDIS_URL is not set: the worker needs the Redis broker the API sends jobs to. "
        "Set REDIS_URL (e.g. redis://localhost:6379/0), or run `ganserve up`, which starts "
        "a private broker, the API and a worker together."
    )
