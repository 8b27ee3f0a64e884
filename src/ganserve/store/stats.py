"""Aggregate reads for monitoring: jobs by status and what running jobs report."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ganserve.store.tables import JOB_STATUSES, Job


@dataclass(frozen=True)
class RunningJob:
    id: str
    name: str
    steps_per_sec: float | None
    metrics: dict[str, float]  # latest numeric metric values


def jobs_by_status(session: Session) -> dict[str, int]:
    """Every status with its job count (0 for statuses no job is in)."""
    counts = dict.fromkeys(JOB_STATUSES, 0)
    for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        counts[status] = count
    return counts


def running_jobs(session: Session) -> list[RunningJob]:
    rows = session.execute(
        select(Job.id, Job.name, Job.steps_per_sec, Job.latest_metrics).where(
            Job.status == "running"
        )
    )
    return [
        RunningJob(
            job_id,
            name,
            rate,
            {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)},
        )  # fmt: skip
        for job_id, name, rate, metrics in rows
    ]
