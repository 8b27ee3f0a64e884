"""Jobs: creation, listing, leases and fencing, progress, cancellation, outcome."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ganserve.store import jobs
from ganserve.store.errors import (
    InvalidValueError,
    RecordNotFoundError,
    StaleAttemptError,
    StateConflictError,
)
from ganserve.store.tables import Job

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SPEC = {"name": "digits-gan", "dataset": "digits", "steps": 100, "lr": 2e-4}


def new_job(session: Session, max_attempts: int = 3) -> Job:
    job = jobs.create_job(session, "digits-gan", SPEC, total_steps=100, max_attempts=max_attempts)
    session.commit()
    return job


def test_create_and_get(session: Session) -> None:
    job = new_job(session)
    assert len(job.id) == 32
    fetched = jobs.get_job(session, job.id)
    assert fetched.status == "queued"
    assert fetched.spec == SPEC
    assert fetched.attempt == 0 and fetched.max_attempts == 3
    assert fetched.warnings == [] and fetched.last_losses == {}
    assert fetched.created_at.tzinfo is not None
    assert fetched.enqueued_at is not None and fetched.enqueued_at.utcoffset() == timedelta(0)


def test_get_missing_job(session: Session) -> None:
    with pytest.raises(RecordNotFoundError, match="job 'nope' not found"):
        jobs.get_job(session, "nope")


def test_create_validates(session: Session) -> None:
    with pytest.raises(InvalidValueError, match="invalid model name"):
        jobs.create_job(session, "Bad Name", SPEC, total_steps=10)
    with pytest.raises(InvalidValueError, match="total_steps"):
        jobs.create_job(session, "ok", SPEC, total_steps=0)
    with pytest.raises(InvalidValueError, match="max_attempts"):
        jobs.create_job(session, "ok", SPEC, total_steps=1, max_attempts=0)


def test_list_jobs_newest_first_with_filter_and_paging(session: Session) -> None:
    created = [
        jobs.create_job(session, "m", SPEC, total_steps=10, now=T0 + timedelta(seconds=i))
        for i in range(5)
    ]
    session.commit()
    jobs.claim_job(session, created[1].id, "w", 60, now=T0)
    session.commit()

    page, total = jobs.list_jobs(session)
    assert total == 5
    assert [j.id for j in page] == [j.id for j in reversed(created)]

    page, total = jobs.list_jobs(session, limit=2, offset=1)
    assert total == 5
    assert [j.id for j in page] == [created[3].id, created[2].id]

    page, total = jobs.list_jobs(session, status="running")
    assert total == 1 and page[0].id == created[1].id and page[0].status == "running"
    page, total = jobs.list_jobs(session, status="queued")
    assert total == 4

    with pytest.raises(InvalidValueError, match="valid: queued, running"):
        jobs.list_jobs(session, status="done")
    with pytest.raises(InvalidValueError, match="limit"):
        jobs.list_jobs(session, limit=0)


def test_claim_once_while_lease_live_then_again_after_expiry(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        job_id = new_job(s).id
    with sessions() as a, sessions() as b:
        assert jobs.claim_job(a, job_id, "worker-a", lease_s=30, now=T0) == 1
        a.commit()
        assert (
            jobs.claim_job(b, job_id, "worker-b", lease_s=30, now=T0 + timedelta(seconds=5)) is None
        )
        b.commit()
        job = jobs.get_job(b, job_id)
        assert (job.status, job.worker, job.attempt) == ("running", "worker-a", 1)
        assert job.started_at == T0
        assert job.lease_expires_at == T0 + timedelta(seconds=30)

        # worker-a died: its lease expires and worker-b takes over with attempt 2.
        assert (
            jobs.claim_job(b, job_id, "worker-b", lease_s=30, now=T0 + timedelta(seconds=31)) == 2
        )
        b.commit()
        job = jobs.get_job(a, job_id)
        assert (job.status, job.worker, job.attempt) == ("running", "worker-b", 2)
        assert job.started_at == T0  # the first start is kept

        # worker-a's writes are fenced off now.
        with pytest.raises(StaleAttemptError, match="current attempt is 2"):
            jobs.heartbeat(a, job_id, 1, lease_s=30)


def test_concurrent_claims_have_one_winner(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        job_id = new_job(s).id
    results: list[int | None] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def claim(worker: str) -> None:
        try:
            with sessions() as session:
                barrier.wait()
                results.append(jobs.claim_job(session, job_id, worker, lease_s=60))
                session.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results, key=lambda r: r or 0) == [None] * 5 + [1]


def test_claim_refuses_finished_cancelled_exhausted_and_missing(session: Session) -> None:
    assert jobs.claim_job(session, "0" * 32, "w", 10) is None

    done = new_job(session)
    attempt = jobs.claim_job(session, done.id, "w", 10)
    assert attempt == 1
    jobs.finish_job(session, done.id, attempt, "succeeded")
    assert jobs.claim_job(session, done.id, "w", 10) is None

    cancelled = new_job(session)
    jobs.request_cancel(session, cancelled.id)
    assert jobs.claim_job(session, cancelled.id, "w", 10) is None

    limited = new_job(session, max_attempts=2)
    assert jobs.claim_job(session, limited.id, "w", 10, now=T0) == 1
    assert jobs.claim_job(session, limited.id, "w", 10, now=T0 + timedelta(seconds=11)) == 2
    assert jobs.claim_job(session, limited.id, "w", 10, now=T0 + timedelta(seconds=22)) is None

    with pytest.raises(InvalidValueError, match="lease_s"):
        jobs.claim_job(session, limited.id, "w", 0)


def test_heartbeat_extends_lease(session: Session) -> None:
    job = new_job(session)
    attempt = jobs.claim_job(session, job.id, "w", 10, now=T0)
    assert attempt is not None
    jobs.heartbeat(session, job.id, attempt, 10, now=T0 + timedelta(seconds=8))
    session.commit()
    # Not claimable at T0+15: the heartbeat moved the lease to T0+18.
    assert jobs.claim_job(session, job.id, "other", 10, now=T0 + timedelta(seconds=15)) is None
    fetched = jobs.get_job(session, job.id)
    assert fetched.heartbeat_at == T0 + timedelta(seconds=8)
    assert fetched.lease_expires_at == T0 + timedelta(seconds=18)
    with pytest.raises(StaleAttemptError):
        jobs.heartbeat(session, job.id, attempt + 1, 10)
    with pytest.raises(RecordNotFoundError):
        jobs.heartbeat(session, "f" * 32, 1, 10)


def test_update_progress(session: Session) -> None:
    job = new_job(session)
    attempt = jobs.claim_job(session, job.id, "w", 10, now=T0)
    assert attempt is not None
    jobs.update_progress(
        session,
        job.id,
        attempt,
        step=40,
        steps_per_sec=12.5,
        eta_s=4.8,
        losses={"d": 0.7, "g": float("nan")},
        metrics={"fd": 31.0},
        lease_s=60,
        now=T0 + timedelta(seconds=3),
    )
    jobs.update_progress(
        session,
        job.id,
        attempt,
        50,
        12.0,
        4.2,
        {"d": 0.6, "g": 1.1},
        metrics={"coverage": 9.0},
        now=T0 + timedelta(seconds=4),
    )
    session.commit()
    fetched = jobs.get_job(session, job.id)
    assert (fetched.step, fetched.steps_per_sec, fetched.eta_s) == (50, 12.0, 4.2)
    assert fetched.last_losses == {"d": 0.6, "g": 1.1}
    assert fetched.latest_metrics == {"fd": 31.0, "coverage": 9.0}
    assert fetched.heartbeat_at == T0 + timedelta(seconds=4)
    assert fetched.lease_expires_at == T0 + timedelta(seconds=63)  # from the first call


def test_update_progress_with_stale_attempt_writes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        job_id = new_job(s).id
        assert jobs.claim_job(s, job_id, "old", 10, now=T0) == 1
        jobs.update_progress(s, job_id, 1, 10, 1.0, 90.0, {"d": 0.5}, now=T0)
        s.commit()
        assert jobs.claim_job(s, job_id, "new", 10, now=T0 + timedelta(seconds=20)) == 2
        s.commit()
    with sessions() as s:
        with pytest.raises(StaleAttemptError, match="attempt 1 is stale"):
            jobs.update_progress(s, job_id, 1, 99, 9.0, 0.1, {"d": 9.9}, metrics={"fd": 1.0})
        s.commit()
    with sessions() as s:
        job = jobs.get_job(s, job_id)
        assert (job.step, job.last_losses, job.latest_metrics) == (10, {"d": 0.5}, {})
        assert job.worker == "new" and job.heartbeat_at == T0 + timedelta(seconds=20)


def test_cancel_queued_job_is_immediate(session: Session) -> None:
    job = new_job(session)
    cancelled = jobs.request_cancel(session, job.id)
    session.commit()
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert jobs.is_cancel_requested(session, job.id)
    with pytest.raises(StateConflictError, match="already been cancelled"):
        jobs.request_cancel(session, job.id)


def test_cancel_running_job_sets_flag_for_the_worker(session: Session) -> None:
    job = new_job(session)
    attempt = jobs.claim_job(session, job.id, "w", 60)
    assert attempt is not None
    assert not jobs.is_cancel_requested(session, job.id)
    running = jobs.request_cancel(session, job.id)
    assert running.status == "running" and running.cancel_requested
    assert jobs.request_cancel(session, job.id).status == "running"  # idempotent
    assert jobs.is_cancel_requested(session, job.id)
    # The worker notices at a step boundary and stops.
    finished = jobs.finish_job(session, job.id, attempt, "cancelled")
    assert finished.status == "cancelled" and finished.finished_at is not None
    with pytest.raises(StateConflictError):
        jobs.request_cancel(session, job.id)


def test_cancel_finished_job_conflicts_and_missing_job_not_found(session: Session) -> None:
    job = new_job(session)
    attempt = jobs.claim_job(session, job.id, "w", 60)
    assert attempt is not None
    jobs.finish_job(session, job.id, attempt, "succeeded", model_name="digits-gan", model_version=1)
    with pytest.raises(StateConflictError, match="already succeeded"):
        jobs.request_cancel(session, job.id)
    with pytest.raises(RecordNotFoundError):
        jobs.request_cancel(session, "a" * 32)
    with pytest.raises(RecordNotFoundError):
        jobs.is_cancel_requested(session, "a" * 32)


def test_finish_job(session: Session) -> None:
    job = new_job(session)
    attempt = jobs.claim_job(session, job.id, "w", 60)
    assert attempt is not None
    with pytest.raises(InvalidValueError, match="valid: succeeded, failed, cancelled"):
        jobs.finish_job(session, job.id, attempt, "running")
    with pytest.raises(StaleAttemptError):
        jobs.finish_job(session, job.id, attempt + 1, "succeeded")
    done = jobs.finish_job(
        session, job.id, attempt, "succeeded", model_name="digits-gan", model_version=3
    )
    session.commit()
    assert (done.status, done.model_name, done.model_version) == ("succeeded", "digits-gan", 3)
    assert done.lease_expires_at is None and done.finished_at is not None
    with pytest.raises(StaleAttemptError, match="the job is succeeded"):
        jobs.finish_job(session, job.id, attempt, "failed", error="late")


def test_mark_failed(session: Session) -> None:
    queued = new_job(session)
    failed = jobs.mark_failed(session, queued.id, "broker unreachable")
    assert (failed.status, failed.error) == ("failed", "broker unreachable")
    with pytest.raises(StateConflictError, match="already failed"):
        jobs.mark_failed(session, queued.id, "again")

    running = new_job(session)
    attempt = jobs.claim_job(session, running.id, "w", 60)
    assert attempt is not None
    with pytest.raises(StaleAttemptError):
        jobs.mark_failed(session, running.id, "x", attempt=attempt + 1)
    failed = jobs.mark_failed(session, running.id, "loss is NaN at step 7", attempt=attempt)
    assert (failed.status, failed.error) == ("failed", "loss is NaN at step 7")


def test_release_job_requeues_and_keeps_attempt(session: Session) -> None:
    job = new_job(session)
    attempt = jobs.claim_job(session, job.id, "w1", 60, now=T0)
    assert attempt == 1
    released = jobs.release_job(session, job.id, attempt, now=T0 + timedelta(seconds=5))
    assert (released.status, released.worker, released.attempt) == ("queued", None, 1)
    assert released.enqueued_at == T0 + timedelta(seconds=5)
    # A release is cooperative, not a failure: the attempt it used is given back.
    assert released.max_attempts == 4
    with pytest.raises(StaleAttemptError):
        jobs.release_job(session, job.id, attempt)
    assert jobs.claim_job(session, job.id, "w2", 60) == 2


def test_releases_never_exhaust_the_attempts(session: Session) -> None:
    job = new_job(session, max_attempts=1)
    for expected in range(1, 6):
        attempt = jobs.claim_job(session, job.id, "w", 60)
        assert attempt == expected
        jobs.release_job(session, job.id, attempt)
    assert jobs.get_job(session, job.id).max_attempts == 6


def test_release_with_cancel_requested_cancels(session: Session) -> None:
    job = new_job(session)
    attempt = jobs.claim_job(session, job.id, "w", 60)
    assert attempt is not None
    jobs.request_cancel(session, job.id)
    released = jobs.release_job(session, job.id, attempt)
    assert released.status == "cancelled" and released.finished_at is not None
    assert released.max_attempts == 3


def test_reap_stale_job_requeues_a_lost_attempt(session: Session) -> None:
    job = new_job(session)
    assert jobs.claim_job(session, job.id, "w1", 10, now=T0) == 1
    later = T0 + timedelta(seconds=11)
    reaped = jobs.reap_stale_job(session, job.id, 1, "lost", now=later)
    assert reaped is not None
    assert (reaped.status, reaped.worker, reaped.error, reaped.finished_at) == (
        "queued",
        None,
        None,
        None,
    )
    assert (reaped.attempt, reaped.max_attempts, reaped.enqueued_at) == (1, 3, later)
    assert reaped.lease_expires_at is None and reaped.heartbeat_at == T0  # last seen
    # Done once: a second reaper (another API replica) finds nothing to do.
    assert jobs.reap_stale_job(session, job.id, 1, "lost", now=later) is None
    assert jobs.claim_job(session, job.id, "w2", 10, now=later) == 2


def test_reap_stale_job_leaves_live_and_superseded_attempts_alone(session: Session) -> None:
    job = new_job(session)
    assert jobs.claim_job(session, job.id, "w1", 10, now=T0) == 1
    # The reaper saw the lease expired, but a heartbeat renewed it meanwhile.
    jobs.heartbeat(session, job.id, 1, 10, now=T0 + timedelta(seconds=9))
    assert jobs.reap_stale_job(session, job.id, 1, "lost", now=T0 + timedelta(seconds=11)) is None
    # Another worker took the job over after the lease expired: attempt 1 is not current.
    assert jobs.claim_job(session, job.id, "w2", 10, now=T0 + timedelta(seconds=30)) == 2
    assert jobs.reap_stale_job(session, job.id, 1, "lost", now=T0 + timedelta(hours=1)) is None
    current = jobs.get_job(session, job.id)
    assert (current.status, current.attempt, current.worker) == ("running", 2, "w2")
    assert jobs.reap_stale_job(session, "0" * 32, 1, "lost") is None


def test_reap_stale_job_fails_a_job_out_of_attempts_with_the_reason(session: Session) -> None:
    job = new_job(session, max_attempts=1)
    assert jobs.claim_job(session, job.id, "w1", 10, now=T0) == 1
    later = T0 + timedelta(seconds=11)
    failed = jobs.reap_stale_job(session, job.id, 1, "worker lost", now=later)
    assert failed is not None
    assert (failed.status, failed.error, failed.finished_at) == ("failed", "worker lost", later)


def test_reap_stale_job_cancels_a_job_with_a_cancel_requested(session: Session) -> None:
    job = new_job(session, max_attempts=1)
    assert jobs.claim_job(session, job.id, "w1", 10, now=T0) == 1
    jobs.request_cancel(session, job.id, now=T0)
    later = T0 + timedelta(seconds=11)
    cancelled = jobs.reap_stale_job(session, job.id, 1, "worker lost", now=later)
    assert cancelled is not None
    assert (cancelled.status, cancelled.error, cancelled.finished_at) == ("cancelled", None, later)


def test_claim_resend_has_one_winner_and_only_for_queued_jobs(session: Session) -> None:
    queued = jobs.create_job(session, "m", SPEC, 10, now=T0)
    cutoff, now = T0 + timedelta(seconds=60), T0 + timedelta(seconds=61)
    assert jobs.claim_resend(session, queued.id, cutoff, now=now)
    assert jobs.get_job(session, queued.id).enqueued_at == now
    # Another reaper that read the job before this resend does not send it again.
    assert not jobs.claim_resend(session, queued.id, cutoff, now=now)
    assert jobs.claim_job(session, queued.id, "w", 10, now=now) == 1
    assert not jobs.claim_resend(session, queued.id, now + timedelta(days=1))
    assert not jobs.claim_resend(session, "0" * 32, now)


def test_reaper_queries(session: Session) -> None:
    live = new_job(session)
    stale = new_job(session)
    queued = jobs.create_job(session, "m", SPEC, 10, now=T0)
    session.commit()
    jobs.claim_job(session, live.id, "w", 100, now=T0)
    jobs.claim_job(session, stale.id, "w", 10, now=T0)
    session.commit()
    found = jobs.stale_running_jobs(session, now=T0 + timedelta(seconds=50))
    assert [j.id for j in found] == [stale.id]
    assert jobs.stale_running_jobs(session, now=T0 + timedelta(seconds=5)) == []
    assert [j.id for j in jobs.queued_jobs(session)] == [queued.id]
    assert jobs.queued_jobs(session, enqueued_before=T0) == []
    assert [j.id for j in jobs.queued_jobs(session, enqueued_before=T0 + timedelta(1))] == [
        queued.id
    ]
    jobs.touch_enqueued(session, queued.id, now=T0 + timedelta(days=2))
    assert jobs.queued_jobs(session, enqueued_before=T0 + timedelta(1)) == []
    with pytest.raises(RecordNotFoundError):
        jobs.touch_enqueued(session, "b" * 32)


def test_add_warning(session: Session) -> None:
    job = new_job(session)
    jobs.add_warning(session, job.id, "class coverage low: 3 of 10 classes")
    jobs.add_warning(session, job.id, "D loss near zero")
    jobs.add_warning(session, job.id, "D loss near zero")
    session.commit()
    assert jobs.get_job(session, job.id).warnings == [
        "class coverage low: 3 of 10 classes",
        "D loss near zero",
    ]
    with pytest.raises(RecordNotFoundError):
        jobs.add_warning(session, "c" * 32, "x")


def test_naive_datetimes_are_refused(session: Session) -> None:
    job = new_job(session)
    with pytest.raises(Exception, match="naive datetime"):
        jobs.claim_job(session, job.id, "w", 10, now=datetime(2030, 1, 1))
