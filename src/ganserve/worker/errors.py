"""Exceptions raised by the worker. Every one derives from WorkerError."""

from __future__ import annotations


class WorkerError(Exception):
    """Base class of every error the worker raises."""


class BrokerNotConfiguredError(WorkerError):
    """No Redis URL is set, so the worker has no broker to consume from."""


class JobLost(WorkerError):
    """This worker's attempt is no longer the job's current one; it must stop writing."""
