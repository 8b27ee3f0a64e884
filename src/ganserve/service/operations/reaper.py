"""The reaper: takes jobs back from lost workers and sends lost messages again.

The database owns job state; the broker only delivers messages. Each pass:

1. Running jobs whose lease expired (their worker stopped heartbeating: killed, frozen, cut
   off) go through `reap_stale_job`, fenced by the attempt seen: queued again and their task
   sent again while attempts remain (the next claim resumes from the last checkpoint),
   failed with the reason once they are used up, cancelled if a cancel was requested.
2. Queued jobs last sent more than `requeue_after_s` ago whose message the broker no longer
   holds (a Redis restart without persistence, a send that failed, a worker that died between
   receiving a message and claiming its job) are sent again.

Every API process runs it as a background task (`run_forever`, started by the lifespan), its
database and broker work in a thread. Several replicas may run it at once: each change is a
conditional UPDATE that one of them wins (`reap_stale_job`, `claim_resend`), and the loser
sends nothing; a duplicate message is harmless anyway, since only one claim succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import anyio.to_thread
import redis.asyncio
from redis.exceptions import RedisError

from ganserve.service.jobs.events import announce_status
from ganserve.service.jobs.queue import TrainingQueue
from ganserve.store import Job, Store
from ganserve.store import jobs as job_store
from ganserve.store.errors import StateConflictError
from ganserve.store.tables import utcnow

log = logging.getLogger(__name__)

ActionKind = Literal["requeued", "failed", "cancelled", "resent"]


@dataclass(frozen=True)
class ReaperAction:
    """What one pass did to one job; `job` is the row after the change."""

    kind: ActionKind
    job: Job


class Reaper:
    """One reaper over a store and a training queue; `run_once` is one pass."""

    def __init__(self, store: Store, queue: TrainingQueue, requeue_after_s: float) -> None:
        self.store = store
        self.queue = queue
        self.requeue_after_s = requeue_after_s

    def run_once(self, now: datetime | None = None) -> list[ReaperAction]:
        """One pass (blocking: database and broker I/O); what it did, job by job."""
        now = now or utcnow()
        return [*self.reap_stale(now), *self.resend_lost(now)]

    async def run_forever(
        self, interval_s: float, events: redis.asyncio.Redis | None = None
    ) -> None:
        """A pass every `interval_s` until cancelled; status changes are announced on `events`."""
        log.info(
            "reaper: a pass every %g s (lost messages resent after %g s)",
            interval_s,
            self.requeue_after_s,
        )
        while True:
            await asyncio.sleep(interval_s)
            try:
                actions = await anyio.to_thread.run_sync(self.run_once)
            except Exception:  # the database is down, say: try again next time
                log.exception("reaper pass failed; retrying in %g s", interval_s)
                continue
            if events is not None:
                for action in actions:
                    if action.kind != "resent":
                        await announce_status(events, action.job)

    # --- stale leases --------------------------------------------------------------------

    def reap_stale(self, now: datetime) -> list[ReaperAction]:
        with self.store.session() as session:
            stale = job_store.stale_running_jobs(session, now)
        actions: list[ReaperAction] = []
        for job in stale:
            try:
                action = self._reap(job, now)
            except Exception:  # one bad job must not stop the others
                log.exception("job %s: reaper could not take it back", job.id, extra=_extra(job))
                continue
            if action is not None:
                actions.append(action)
        return actions

    def _reap(self, seen: Job, now: datetime) -> ReaperAction | None:
        reason = lost_reason(seen)
        with self.store.session() as session:
            job = job_store.reap_stale_job(session, seen.id, seen.attempt, reason, now=now)
        if job is None:
            log.info(
                "job %s: attempt %d renewed its lease or was superseded; left alone",
                seen.id,
                seen.attempt,
                extra=_extra(seen),
            )
            return None
        if job.status == "queued":
            log.warning(
                "job %s: worker %s lost (attempt %d of %d, last heartbeat %s); requeued",
                job.id,
                seen.worker,
                seen.attempt,
                job.max_attempts,
                _when(seen.heartbeat_at),
                extra=_extra(job),
            )
            self._send(job)
            return ReaperAction("requeued", job)
        if job.status == "failed":
            log.warning("job %s: failed: %s", job.id, reason, extra=_extra(job))
            return ReaperAction("failed", job)
        log.info("job %s: worker lost after a cancel request; cancelled", job.id, extra=_extra(job))
        return ReaperAction("cancelled", job)

    # --- lost messages -------------------------------------------------------------------

    def resend_lost(self, now: datetime) -> list[ReaperAction]:
        cutoff = now - timedelta(seconds=self.requeue_after_s)
        with self.store.session() as session:
            due = job_store.queued_jobs(session, enqueued_before=cutoff)
        if not due:
            return []
        try:
            # An unacknowledged message older than the cutoff was delivered to a worker that
            # never claimed its job (a live worker claims at once): that worker is gone.
            pending = self.queue.pending_job_ids(unacked_since=cutoff.timestamp())
        except (RedisError, OSError) as error:
            log.warning("reaper: cannot read the broker's queues (%s); no resends", error)
            return []
        actions: list[ReaperAction] = []
        for job in due:
            if job.id in pending:
                continue
            try:
                action = self._resend(job, cutoff, now)
            except Exception:
                log.exception("job %s: reaper could not send it again", job.id, extra=_extra(job))
                continue
            if action is not None:
                actions.append(action)
        return actions

    def _resend(self, job: Job, cutoff: datetime, now: datetime) -> ReaperAction | None:
        if job.attempt >= job.max_attempts:  # no claim would ever accept it
            with self.store.session() as session:
                try:
                    failed = job_store.mark_failed(session, job.id, out_of_attempts_reason(job))
                except StateConflictError:
                    return None
            log.warning("job %s: failed: %s", job.id, failed.error, extra=_extra(job))
            return ReaperAction("failed", failed)
        with self.store.session() as session:
            mine = job_store.claim_resend(session, job.id, cutoff, now=now)
        if not mine:  # started, cancelled, or resent by another reaper meanwhile
            return None
        log.warning(
            "job %s: queued since %s but its message is in no queue; sending it again",
            job.id,
            _when(job.enqueued_at),
            extra=_extra(job),
        )
        self._send(job)
        return ReaperAction("resent", job)

    def _send(self, job: Job) -> None:
        try:
            self.queue.enqueue(job.id)
        except Exception as error:  # any broker failure: a later pass sends it again
            log.warning(
                "job %s: could not send it to the broker (%s); retrying in %g s",
                job.id,
                error,
                self.requeue_after_s,
                extra=_extra(job),
            )


def lost_reason(job: Job) -> str:
    """The error of a job failed because its last worker was lost with no attempts left."""
    return (
        f"worker lost: attempt {job.attempt} of {job.max_attempts} stopped heartbeating and no "
        f"attempts are left; last seen: {job.worker or 'unknown worker'} at "
        f"{_when(job.heartbeat_at)}, step {job.step}"
    )


def out_of_attempts_reason(job: Job) -> str:
    return f"no attempts left ({job.attempt} of {job.max_attempts} used)"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "never"


def _extra(job: Job) -> dict[str, object]:
    return {"job_id": job.id, "attempt": job.attempt}
