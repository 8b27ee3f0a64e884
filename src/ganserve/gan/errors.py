"""Exceptions raised by the ML core. Every one derives from GanError.

Each survives pickling (`__reduce__` where `__init__` takes other arguments than the message):
render processes send them back to the API process (service.render_process).
"""

from __future__ import annotations

from typing import Any


class GanError(Exception):
    """Base class of every error the ML core raises."""


class ConfigError(GanError, ValueError):
    """A training or sampling option is invalid; names the field and the valid choices."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.field, self.message)


class DatasetError(GanError):
    """A dataset is unknown, missing its files, or malformed."""


class CheckpointError(GanError):
    """A checkpoint or exported generator is missing, torn, or not in our format."""


class DivergenceError(GanError):
    """A loss became NaN or infinite; training cannot continue."""

    def __init__(self, step: int, losses: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in losses.items())
        super().__init__(f"training diverged at step {step}: non-finite loss ({shown})")
        self.step = step
        self.losses = losses

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.step, self.losses)


class QualityAlarm(GanError):
    """A quality alarm (collapse, divergence, a translation alarm) stopped training (on_alarm)."""

    def __init__(self, kind: str, step: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.step = step

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.kind, self.step, str(self))
