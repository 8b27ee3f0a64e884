"""Metric history: one row per (job, step, series) for losses and quality metrics.

Attempt-safe: a resumed attempt re-reports the steps after its checkpoint, which the lost
attempt may have reported already; a point replaces any earlier one at the same (series,
step), and reads keep the newest row of each should an older database hold duplicates.

Values that are not finite (NaN, inf) are skipped: JSON cannot carry them and SQLite would
store NULL. A diverging job is reported through its status and error instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from ganserve.store.errors import RecordNotFoundError
from ganserve.store.names import validate_series
from ganserve.store.tables import Job, MetricPoint, utcnow


def append_metrics(
    session: Session,
    job_id: str,
    step: int,
    values: Mapping[str, float],
    extra: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> int:
    """Store one point per finite value at `step`; returns how many were stored.

    `extra` (e.g. the feature extractor and sample counts behind an FD value) is stored with
    every point of this call.
    """
    if session.scalar(select(Job.id).where(Job.id == job_id)) is None:
        raise RecordNotFoundError("job", job_id, f"job {job_id!r} not found")
    now = now or utcnow()
    rows = [
        {
            "job_id": job_id,
            "step": int(step),
            "name": str(name),
            "value": float(value),
            "extra": dict(extra) if extra is not None else None,
            "created_at": now,
        }
        for name, value in values.items()
        if math.isfinite(float(value))
    ]
    if rows:
        session.execute(
            delete(MetricPoint).where(
                MetricPoint.job_id == job_id,
                MetricPoint.step == int(step),
                MetricPoint.name.in_([row["name"] for row in rows]),
            )
        )
        session.execute(insert(MetricPoint), rows)
    return len(rows)


def history(
    session: Session,
    job_id: str,
    names: Iterable[str] | None = None,
    after_step: int | None = None,
) -> dict[str, list[tuple[int, float]]]:
    """Each series of the job as (step, value) pairs sorted by step (then by insertion).

    `names` keeps only those series; `after_step` only points with a larger step (for
    incremental updates). RecordNotFoundError if the job does not exist.
    """
    if names is not None:
        names = [validate_series(name) for name in names]
    if session.scalar(select(Job.id).where(Job.id == job_id)) is None:
        raise RecordNotFoundError("job", job_id, f"job {job_id!r} not found")
    stmt = select(MetricPoint.name, MetricPoint.step, MetricPoint.value).where(
        MetricPoint.job_id == job_id
    )
    if names is not None:
        stmt = stmt.where(MetricPoint.name.in_(list(names)))
    if after_step is not None:
        stmt = stmt.where(MetricPoint.step > after_step)
    newest: dict[str, dict[int, float]] = {}  # series -> step -> value; later rows win
    for name, step, value in session.execute(stmt.order_by(MetricPoint.step, MetricPoint.id)).all():
        newest.setdefault(name, {})[int(step)] = float(value)
    return {name: list(points.items()) for name, points in newest.items()}
