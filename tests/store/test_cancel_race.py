"""Cancel against completion: the job row lock orders them, so exactly one of them wins."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session, sessionmaker

from ganserve.store import jobs
from ganserve.store.errors import StateConflictError


def _running_job(session: Session) -> tuple[str, int]:
    job = jobs.create_job(session, "race", {"dataset": "digits"}, total_steps=1)
    attempt = jobs.claim_job(session, job.id, "w:1", lease_s=60)
    assert attempt is not None
    session.commit()
    return job.id, attempt


def test_a_cancel_committed_first_is_seen_by_the_completion(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        job_id, attempt = _running_job(session)
        jobs.request_cancel(session, job_id)
        session.commit()
        assert jobs.lock_for_completion(session, job_id, attempt) is True


def test_a_cancel_during_the_completion_waits_and_is_told_too_late(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as completing:
        job_id, attempt = _running_job(completing)
        assert jobs.lock_for_completion(completing, job_id, attempt) is False  # row locked
        outcome: list[BaseException | str] = []

        def cancel() -> None:
            try:
                with sessions() as session:
                    outcome.append(jobs.request_cancel(session, job_id).status)
                    session.commit()
            except BaseException as error:
                outcome.append(error)

        canceller = threading.Thread(target=cancel)
        canceller.start()
        canceller.join(timeout=0.5)
        assert canceller.is_alive()  # waiting for the completing transaction's lock
        jobs.finish_job(completing, job_id, attempt, "succeeded")
        completing.commit()
        canceller.join(timeout=30)
    [result] = outcome
    assert isinstance(result, StateConflictError) and "already succeeded" in str(result)
    with sessions() as session:
        job = jobs.get_job(session, job_id)
        assert job.status == "succeeded" and job.cancel_requested is False
