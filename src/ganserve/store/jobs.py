"""Training jobs: create, list, lease to a worker, report progress, cancel, finish.

Every function takes a `Session`, flushes what it writes and leaves the commit to the caller
(`session_scope`). Jobs come back as ORM `Job` objects; sessions from `make_session_factory`
keep them readable after commit (expire_on_commit=False).

Leases and fencing. A worker starts a job with `claim_job`, one conditional UPDATE that
succeeds for exactly one caller: the job must be queued, or running with an expired lease
(its worker died), with attempts left and no cancel requested. Each claim increments
`attempt`, the fencing token; every later write by the worker (`heartbeat`,
`update_progress`, `finish_job`, `release_job`) names its attempt and raises
`StaleAttemptError`, writing nothing, once another claim has superseded it.

A reaper (the service, on a timer) looks at `stale_running_jobs` and `queued_jobs`: a stale
job goes through `reap_stale_job`, fenced by the attempt the reaper saw (queued again when
attempts are left, so its next claim resumes it from the last checkpoint; failed when none
are; cancelled when a cancel was requested); a queued job whose message was lost is sent
again after `claim_resend` says this reaper (of several replicas) is the one to send it.

Attempt accounting: every claim uses one attempt (the fencing token only grows). A lost
worker's attempt counts against `max_attempts`; a cooperative `release_job` (a worker
shutting down) gives its attempt back by raising `max_attempts` by one.

Times default to now (UTC); the `now` keyword exists for tests and must be timezone-aware.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from ganserve.store.errors import (
    InvalidValueError,
    RecordNotFoundError,
    StaleAttemptError,
    StateConflictError,
)
from ganserve.store.names import validate_model_name
from ganserve.store.tables import FINISHED_STATUSES, JOB_STATUSES, Job, new_job_id, utcnow

# Warnings kept per job; identical warnings are stored once.
MAX_WARNINGS = 100
LIVE_STATUSES = ("queued", "running")


def create_job(
    session: Session,
    name: str,
    spec: Mapping[str, Any],
    total_steps: int,
    max_attempts: int = 3,
    *,
    now: datetime | None = None,
) -> Job:
    """Insert a queued job that will train (and register a version of) model `name`."""
    validate_model_name(name)
    if total_steps < 1:
        raise InvalidValueError("total_steps", f"must be at least 1, got {total_steps}")
    if max_attempts < 1:
        raise InvalidValueError("max_attempts", f"must be at least 1, got {max_attempts}")
    now = now or utcnow()
    job = Job(
        id=new_job_id(),
        name=name,
        spec=dict(spec),
        status="queued",
        step=0,
        total_steps=total_steps,
        last_losses={},
        latest_metrics={},
        warnings=[],
        attempt=0,
        max_attempts=max_attempts,
        cancel_requested=False,
        enqueued_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job:
    """The job with this id, freshly read; RecordNotFoundError if there is none."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise RecordNotFoundError("job", job_id, f"job {job_id!r} not found")
    return job


def list_jobs(
    session: Session, status: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Job], int]:
    """One page of jobs, newest first, and the number of jobs matching `status` in all."""
    if status is not None and status not in JOB_STATUSES:
        raise InvalidValueError(
            "status", f"unknown status {status!r}; valid: {', '.join(JOB_STATUSES)}"
        )
    if limit < 1:
        raise InvalidValueError("limit", f"must be at least 1, got {limit}")
    if offset < 0:
        raise InvalidValueError("offset", f"must be at least 0, got {offset}")
    where = [] if status is None else [Job.status == status]
    total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    page = session.scalars(
        select(Job)
        .where(*where)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
        .offset(offset)
        .execution_options(populate_existing=True)
    ).all()
    return list(page), total


def claim_job(
    session: Session, job_id: str, worker: str, lease_s: float, *, now: datetime | None = None
) -> int | None:
    """Start (or take over) a job for `worker`; the new attempt number, or None.

    None when the job is running under a live lease, finished, cancelled or out of attempts
    (or does not exist). The check and the write are one UPDATE, so of two concurrent claims
    at most one succeeds.
    """
    _check_lease(lease_s)
    now = now or utcnow()
    claimable = or_(
        Job.status == "queued",
        and_(
            Job.status == "running",
            or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
        ),
    )
    stmt = (
        update(Job)
        .where(
            Job.id == job_id,
            claimable,
            Job.cancel_requested.is_(False),
            Job.attempt < Job.max_attempts,
        )
        .values(
            status="running",
            attempt=Job.attempt + 1,
            worker=worker,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s),
            started_at=case((Job.started_at.is_(None), now), else_=Job.started_at),
            updated_at=now,
        )
        .returning(Job.attempt)
        .execution_options(synchronize_session=False)
    )
    attempt = session.execute(stmt).scalar_one_or_none()
    return None if attempt is None else int(attempt)


def heartbeat(
    session: Session, job_id: str, attempt: int, lease_s: float, *, now: datetime | None = None
) -> None:
    """Extend the lease of the worker running `attempt`; StaleAttemptError if superseded."""
    _check_lease(lease_s)
    now = now or utcnow()
    _fenced_update(
        session,
        job_id,
        attempt,
        ("running",),
        heartbeat_at=now,
        lease_expires_at=now + timedelta(seconds=lease_s),
        updated_at=now,
    )


def update_progress(
    session: Session,
    job_id: str,
    attempt: int,
    step: int,
    steps_per_sec: float | None,
    eta_s: float | None,
    losses: Mapping[str, float],
    *,
    metrics: Mapping[str, float] | None = None,
    lease_s: float | None = None,
    now: datetime | None = None,
) -> None:
    """Record progress of `attempt` (also a heartbeat); StaleAttemptError if superseded.

    `losses` replaces the job's last losses; `metrics`, when given, is merged into its latest
    metrics (each metric keeps its newest value). `lease_s` also extends the lease.
    Non-finite numbers are stored as null (JSON has no NaN).
    """
    now = now or utcnow()
    values: dict[str, Any] = {
        "step": step,
        "steps_per_sec": _finite_or_none(steps_per_sec),
        "eta_s": _finite_or_none(eta_s),
        "last_losses": _json_numbers(losses),
        "heartbeat_at": now,
        "updated_at": now,
    }
    if lease_s is not None:
        _check_lease(lease_s)
        values["lease_expires_at"] = now + timedelta(seconds=lease_s)
    _fenced_update(session, job_id, attempt, ("running",), **values)
    if metrics:
        _merge_metrics(session, job_id, metrics)


def record_metrics(
    session: Session,
    job_id: str,
    attempt: int,
    metrics: Mapping[str, float],
    *,
    now: datetime | None = None,
) -> None:
    """Merge evaluation `metrics` into the job's latest metrics, fenced by `attempt`."""
    _fenced_update(session, job_id, attempt, ("running",), updated_at=now or utcnow())
    _merge_metrics(session, job_id, metrics)


def _merge_metrics(session: Session, job_id: str, metrics: Mapping[str, float]) -> None:
    # The fenced UPDATE before this holds the row lock, so this read-modify-write is safe.
    current = session.scalar(select(Job.latest_metrics).where(Job.id == job_id)) or {}
    merged = {**current, **_json_numbers(metrics)}
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(latest_metrics=merged)
        .execution_options(synchronize_session=False)
    )


def request_cancel(session: Session, job_id: str, *, now: datetime | None = None) -> Job:
    """Cancel a job: a queued one at once, a running one at its worker's next step.

    Idempotent while the job is live; StateConflictError once it has finished.
    """
    now = now or utcnow()
    cancelled = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="cancelled",
            cancel_requested=True,
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    if cancelled is None:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(cancel_requested=True, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    job = get_job(session, job_id)
    if cancelled is None and job.status != "running":
        raise StateConflictError(
            f"job {job_id!r} has already {_finished_verb(job.status)}; "
            "only queued or running jobs can be cancelled"
        )
    return job


def lock_for_completion(
    session: Session, job_id: str, attempt: int, *, now: datetime | None = None
) -> bool:
    """Lock the job row for the transaction that completes it; whether a cancel came in.

    The fenced UPDATE takes the row lock, so `request_cancel` either committed before (the
    caller sees cancel_requested and finishes the job as cancelled, registering nothing) or
    waits for our commit and then finds the job finished (409: too late). Never both.
    """
    now = now or utcnow()
    _fenced_update(session, job_id, attempt, ("running",), updated_at=now)
    return is_cancel_requested(session, job_id)


def is_cancel_requested(session: Session, job_id: str) -> bool:
    """Whether someone asked to cancel the job (true for a cancelled job too)."""
    row = session.execute(select(Job.cancel_requested).where(Job.id == job_id)).first()
    if row is None:
        raise RecordNotFoundError("job", job_id, f"job {job_id!r} not found")
    return bool(row[0])


def finish_job(
    session: Session,
    job_id: str,
    attempt: int,
    status: str,
    error: str | None = None,
    model_name: str | None = None,
    model_version: int | None = None,
    *,
    now: datetime | None = None,
) -> Job:
    """End `attempt` with `status` (succeeded, failed or cancelled); fenced by attempt."""
    if status not in FINISHED_STATUSES:
        raise InvalidValueError(
            "status", f"cannot finish a job as {status!r}; valid: {', '.join(FINISHED_STATUSES)}"
        )
    now = now or utcnow()
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "finished_at": now,
        "lease_expires_at": None,
        "updated_at": now,
    }
    if model_name is not None:
        values["model_name"] = model_name
    if model_version is not None:
        values["model_version"] = model_version
    _fenced_update(session, job_id, attempt, LIVE_STATUSES, **values)
    return get_job(session, job_id)


def mark_failed(
    session: Session,
    job_id: str,
    error: str,
    *,
    attempt: int | None = None,
    now: datetime | None = None,
) -> Job:
    """Fail a job with `error`: fenced when `attempt` is given, else any live job.

    Without an attempt it is for the API and the reaper (e.g. the broker refused the task);
    StateConflictError if the job has already finished.
    """
    if attempt is not None:
        return finish_job(session, job_id, attempt, "failed", error=error, now=now)
    now = now or utcnow()
    failed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(LIVE_STATUSES))
        .values(
            status="failed", error=error, finished_at=now, lease_expires_at=None, updated_at=now
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    job = get_job(session, job_id)
    if failed is None:
        raise StateConflictError(f"job {job_id!r} has already {_finished_verb(job.status)}")
    return job


def release_job(session: Session, job_id: str, attempt: int, *, now: datetime | None = None) -> Job:
    """Give the job back for another worker (e.g. on shutdown); fenced by attempt.

    It becomes queued again and keeps its attempt count, so the next claim gets a new
    attempt number; a release is no failure, so `max_attempts` grows by one and the job's
    budget of failures is unchanged. A job with a cancel requested becomes cancelled instead.
    """
    now = now or utcnow()
    cancelled = Job.cancel_requested.is_(True)
    _fenced_update(
        session,
        job_id,
        attempt,
        ("running",),
        status=case((cancelled, "cancelled"), else_="queued"),
        finished_at=case((cancelled, now), else_=None),
        max_attempts=case((cancelled, Job.max_attempts), else_=Job.max_attempts + 1),
        worker=None,
        heartbeat_at=None,
        lease_expires_at=None,
        enqueued_at=now,
        updated_at=now,
    )
    return get_job(session, job_id)


def stale_running_jobs(session: Session, now: datetime | None = None) -> list[Job]:
    """Running jobs whose lease has expired (their worker stopped heartbeating)."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(Job)
            .where(
                Job.status == "running",
                or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
            )
            .order_by(Job.lease_expires_at, Job.id)
            .execution_options(populate_existing=True)
        ).all()
    )


def reap_stale_job(
    session: Session, job_id: str, attempt: int, reason: str, *, now: datetime | None = None
) -> Job | None:
    """Take a job back from a lost worker; the job as it is now, or None if it was not stale.

    Fenced: only while `attempt` is current, the job running and its lease expired, so a job
    that just got a heartbeat or was claimed again is left alone (None). The lost attempt
    counts: the job becomes queued when attempts are left (the next claim resumes it from
    its last checkpoint), failed with `reason` when none are, and cancelled when a cancel
    was requested.
    """
    now = now or utcnow()
    cancelled = Job.cancel_requested.is_(True)
    exhausted = and_(Job.cancel_requested.is_(False), Job.attempt >= Job.max_attempts)
    row = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.attempt == attempt,
            Job.status == "running",
            or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
        )
        .values(
            status=case((cancelled, "cancelled"), (exhausted, "failed"), else_="queued"),
            error=case((exhausted, reason), else_=Job.error),
            finished_at=case((or_(cancelled, exhausted), now), else_=None),
            worker=None,
            lease_expires_at=None,
            enqueued_at=now,
            updated_at=now,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    return None if row is None else get_job(session, job_id)


def claim_resend(
    session: Session, job_id: str, enqueued_before: datetime, *, now: datetime | None = None
) -> bool:
    """Whether the caller should send the queued job's task again (and it is recorded).

    True for exactly one of several concurrent callers: the job must still be queued and
    its last send older than `enqueued_before`; its `enqueued_at` becomes `now`.
    """
    now = now or utcnow()
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.enqueued_at < enqueued_before)
        .values(enqueued_at=now, updated_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    return row is not None


def queued_jobs(session: Session, enqueued_before: datetime | None = None) -> list[Job]:
    """Queued jobs, oldest first; only those enqueued before `enqueued_before` if given."""
    where = [Job.status == "queued"]
    if enqueued_before is not None:
        where.append(Job.enqueued_at < enqueued_before)
    return list(
        session.scalars(
            select(Job)
            .where(*where)
            .order_by(Job.enqueued_at, Job.id)
            .execution_options(populate_existing=True)
        ).all()
    )


def touch_enqueued(session: Session, job_id: str, *, now: datetime | None = None) -> None:
    """Record that the job's task was (re-)sent to the broker."""
    now = now or utcnow()
    found = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(enqueued_at=now, updated_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    if found is None:
        raise RecordNotFoundError("job", job_id, f"job {job_id!r} not found")


def add_warning(session: Session, job_id: str, text: str, *, now: datetime | None = None) -> None:
    """Append a warning shown in the job's status (stored once; at most MAX_WARNINGS)."""
    now = now or utcnow()
    # Write first: it takes the row lock (PostgreSQL) or the write lock (SQLite).
    found = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(updated_at=now)
        .returning(Job.warnings)
        .execution_options(synchronize_session=False)
    ).first()
    if found is None:
        raise RecordNotFoundError("job", job_id, f"job {job_id!r} not found")
    warnings: list[str] = list(found[0] or [])
    if text in warnings or len(warnings) >= MAX_WARNINGS:
        return
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(warnings=[*warnings, text])
        .execution_options(synchronize_session=False)
    )


def _fenced_update(
    session: Session, job_id: str, attempt: int, statuses: Sequence[str], **values: Any
) -> None:
    """UPDATE the job if `attempt` is current and its status is one of `statuses`."""
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.status.in_(statuses))
        .values(**values)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    if row is not None:
        return
    current = session.execute(select(Job.attempt, Job.status).where(Job.id == job_id)).first()
    if current is None:
        raise RecordNotFoundError("job", job_id, f"job {job_id!r} not found")
    if current.attempt != attempt:
        detail = f"the current attempt is {current.attempt} ({current.status})"
    else:
        detail = f"the job is {current.status}"
    raise StaleAttemptError(job_id, attempt, detail)


def _check_lease(lease_s: float) -> None:
    if not (lease_s > 0 and math.isfinite(lease_s)):
        raise InvalidValueError("lease_s", f"must be a positive number of seconds, got {lease_s}")


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_numbers(values: Mapping[str, float]) -> dict[str, float | None]:
    return {str(key): _finite_or_none(value) for key, value in values.items()}


def _finished_verb(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "been cancelled"}.get(
        status, f"become {status}"
    )
