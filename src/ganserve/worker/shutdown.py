"""Whether this worker process is shutting down: polled by the training loop.

SIGTERM (or a first Ctrl-C) starts Celery's warm shutdown: the worker stops taking messages
and waits for the running task. With the solo pool that task runs in the main thread, and
Celery only sets a flag, so the training loop must notice and stop: `requested()` becomes
true when Celery sends `worker_shutting_down` or sets its `should_stop`/`should_terminate`
flags, and the run then checkpoints and releases its job for another worker.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import signals
from celery.worker import state

_requested = threading.Event()
_DISPATCH_UID = "ganserve.worker.shutdown"


def requested() -> bool:
    """True once this process was asked to shut down (warm or cold)."""
    return (
        _requested.is_set()
        or _celery_flag(state.should_stop)
        or _celery_flag(state.should_terminate)
    )


def request() -> None:
    """Ask the running job (if any) to checkpoint and hand itself back."""
    _requested.set()


def reset() -> None:
    """Forget a request made in this process (for tests)."""
    _requested.clear()


def install() -> None:
    """Connect to Celery's `worker_shutting_down` signal (idempotent)."""
    signals.worker_shutting_down.connect(_on_shutting_down, weak=False, dispatch_uid=_DISPATCH_UID)


def _on_shutting_down(**_: Any) -> None:
    request()


def _celery_flag(value: object) -> bool:
    # Celery stores the exit code there, and EX_OK is 0: unset means None (or False).
    return value is not None and value is not False
