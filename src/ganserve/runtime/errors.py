"""Exceptions raised while starting and stopping local processes. Every one derives from
ProcessError."""

from __future__ import annotations


class ProcessError(Exception):
    """Base class of every error the runtime layer raises."""


class RuntimeStartError(ProcessError):
    """A process failed to start, exited early, or did not become ready in time."""


class BinaryNotFoundError(RuntimeStartError):
    """A server binary is not installed; the message names the package that provides it."""
