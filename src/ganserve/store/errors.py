"""Exceptions raised by the persistence layer. Every one derives from StoreError."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises."""


class RecordNotFoundError(StoreError):
    """A job, model, version or alias does not exist."""

    def __init__(self, kind: str, key: str, detail: str | None = None) -> None:
        super().__init__(detail or f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class StateConflictError(StoreError):
    """The request contradicts the current state (e.g. cancelling a finished job)."""


class InvalidValueError(StoreError, ValueError):
    """An argument is malformed; names the field and the valid choices."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StaleAttemptError(StoreError):
    """A worker's attempt is no longer the job's current one (fencing)."""

    def __init__(self, job_id: str, attempt: int, detail: str) -> None:
        super().__init__(f"job {job_id!r} attempt {attempt} is stale: {detail}")
        self.job_id = job_id
        self.attempt = attempt


class DatabaseUnavailableError(StoreError):
    """The database cannot be reached (down, refusing connections, out of connections)."""

    def __init__(self, detail: str = "the database is unreachable; retry shortly") -> None:
        super().__init__(detail)
