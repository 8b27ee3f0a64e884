"""Jobs as the API sees them: submit, look up, list, cancel, history, preview.

Plain functions over a `Session` (no FastAPI), each doing what one route needs. Functions
that change a job commit before they return, so a client that reads right after the response
sees the change, and the broker never hears of a job the database does not hold.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio.to_thread
import redis.asyncio

from ganserve.service.jobs.events import announce_status
from ganserve.service.jobs.queue import TrainingQueue
from ganserve.service.jobs.spec import TrainSpec, check_against_dataset
from ganserve.service.schemas import (
    JobHistory,
    JobOut,
    JobPage,
    JobProgress,
    JobStatus,
    ModelRef,
)
from ganserve.store import ArtifactStore, Job, Session, Store
from ganserve.store import idempotency as key_store
from ganserve.store import jobs as job_store
from ganserve.store import metrics as metric_store
from ganserve.store.db import ConstraintError
from ganserve.store.errors import InvalidValueError, RecordNotFoundError
from ganserve.store.names import validate_job_id

log = logging.getLogger(__name__)


def get_job(session: Session, job_id: str) -> Job:
    """The job with this id; RecordNotFoundError (404) for an unknown or malformed id."""
    try:
        validate_job_id(job_id)
    except InvalidValueError:
        raise RecordNotFoundError("job", job_id, f"job {job_id!r} not found") from None
    return job_store.get_job(session, job_id)


@dataclass(frozen=True)
class Idempotency:
    """A client's Idempotency-Key and how long it is remembered (seconds)."""

    key: str
    ttl_s: float


@dataclass(frozen=True)
class Submitted:
    job: Job
    replayed: bool  # True: the key was seen with this spec; `job` is the first submit's


def spec_fingerprint(spec: TrainSpec) -> str:
    """sha256 of the spec as validated (so formatting and key order do not matter)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_job(
    session: Session,
    queue: TrainingQueue,
    spec: TrainSpec,
    data_dir: Path,
    max_attempts: int,
    idempotency: Idempotency | None = None,
) -> Submitted:
    """Validate `spec`, store a queued job, commit, then send its task to the broker.

    If the broker refuses, the job stays queued (committed) and the reaper resends it. With
    an idempotency key seen before (same spec), the first job is returned and nothing is
    queued; with the same key and another spec, StateConflictError (409).
    """
    config = spec.to_config()
    check_against_dataset(config, data_dir)
    fingerprint = spec_fingerprint(spec)
    if idempotency is not None:
        first = key_store.recall(session, "jobs", idempotency.key, fingerprint)
        if first is not None:
            return Submitted(job_store.get_job(session, first.resource), replayed=True)
    job = job_store.create_job(
        session, spec.model_name, config.to_dict(), config.steps, max_attempts=max_attempts
    )
    try:
        if idempotency is not None:  # committed with the job, or neither is
            key_store.remember(
                session, "jobs", idempotency.key, fingerprint, job.id, idempotency.ttl_s
            )
        session.commit()
    except ConstraintError:
        # A concurrent request with the same key committed first: answer with its job.
        session.rollback()
        assert idempotency is not None
        first = key_store.recall(session, "jobs", idempotency.key, fingerprint)
        if first is None:
            raise
        return Submitted(job_store.get_job(session, first.resource), replayed=True)
    return Submitted(_enqueue(session, queue, job), replayed=False)


def _enqueue(session: Session, queue: TrainingQueue, job: Job) -> Job:
    try:
        queue.enqueue(job.id)
    except Exception as error:  # any broker failure: the committed job waits for a resend
        log.warning("could not send job %s to the broker (%s); it stays queued", job.id, error)
        return job
    job_store.touch_enqueued(session, job.id)
    session.commit()
    return job_store.get_job(session, job.id)


def list_jobs(session: Session, status: str | None, limit: int, offset: int) -> JobPage:
    """One page of jobs, newest first."""
    page, total = job_store.list_jobs(session, status=status, limit=limit, offset=offset)
    return JobPage(items=[job_view(job) for job in page], total=total, limit=limit, offset=offset)


def cancel_job(session: Session, job_id: str) -> Job:
    """Cancel at once if queued; ask the worker to stop if running; StateConflictError if done."""
    get_job(session, job_id)
    job = job_store.request_cancel(session, job_id)
    session.commit()
    return job


def job_history(
    session: Session, job_id: str, series: list[str] | None = None, after_step: int | None = None
) -> JobHistory:
    """The job's loss and metric series (optionally only `series`, only after a step)."""
    job = get_job(session, job_id)
    found = metric_store.history(session, job_id, names=series, after_step=after_step)
    return JobHistory(job_id=job.id, step=job.step, total_steps=job.total_steps, series=found)


@dataclass(frozen=True)
class Preview:
    content: bytes
    etag: str  # quoted, as sent in the ETag header


def read_preview(session: Session, artifacts: ArtifactStore, job_id: str) -> Preview:
    """The job's latest preview grid; RecordNotFoundError if the job has none yet."""
    job = get_job(session, job_id)
    try:
        content = artifacts.preview_path(job.id).read_bytes()
    except FileNotFoundError:
        raise RecordNotFoundError(
            "preview", job.id, f"no preview yet for job {job.id!r} (status {job.status})"
        ) from None
    return Preview(content, f'"{hashlib.sha256(content).hexdigest()[:32]}"')


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 asks)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag in tags


def job_view(job: Job) -> JobOut:
    """The API's view of a job row."""
    total = max(job.total_steps, 1)
    model = None
    if job.model_name is not None and job.model_version is not None:
        model = ModelRef(name=job.model_name, version=job.model_version)
    return JobOut(
        id=job.id,
        name=job.name,
        status=cast(JobStatus, job.status),  # the table's CHECK constraint holds
        phase=None if job.status != "running" else "preparing" if job.step == 0 else "training",
        cancel_requested=job.cancel_requested,
        progress=JobProgress(
            step=job.step,
            total_steps=job.total_steps,
            fraction=min(job.step / total, 1.0),
            steps_per_sec=job.steps_per_sec,
            eta_s=job.eta_s,
        ),
        last_losses=dict(job.last_losses or {}),
        latest_metrics=dict(job.latest_metrics or {}),
        warnings=list(job.warnings or []),
        error=job.error,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        worker=job.worker,
        created_at=job.created_at,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        spec=TrainSpec.from_config(job.spec, job.name),
        model=model,
    )


def require_job(store: Store, job_id: str) -> Job:
    """`get_job` in a short session of its own (for long responses such as event streams)."""
    with store.session() as session:
        return get_job(session, job_id)


async def cancel_and_announce(session: Session, client: redis.asyncio.Redis, job_id: str) -> Job:
    """`cancel_job`, then, for a queued job cancelled at once, its terminal status event.

    No worker will ever run that job, so nobody else would end its event stream.
    """
    job = await anyio.to_thread.run_sync(cancel_job, session, job_id)
    if job.status == "cancelled":
        await announce_status(client, job)
    return job


async def require_job_async(store: Store, job_id: str) -> Job:
    """`require_job` off the event loop."""
    return await anyio.to_thread.run_sync(require_job, store, job_id)
