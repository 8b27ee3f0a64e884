"""Idempotency keys: recall what a key made, refuse it with another request, forget it late."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ganserve.store import idempotency
from ganserve.store.errors import InvalidValueError, StateConflictError
from ganserve.store.tables import utcnow


def test_a_key_is_recalled_with_its_request_and_refused_with_another(session: Session) -> None:
    assert idempotency.recall(session, "jobs", "k-1", "f" * 64) is None
    idempotency.remember(session, "jobs", "k-1", "f" * 64, "job-a", ttl_s=60)
    assert idempotency.recall(session, "jobs", "k-1", "f" * 64) == idempotency.Remembered("job-a")
    with pytest.raises(StateConflictError):
        idempotency.recall(session, "jobs", "k-1", "e" * 64)
    assert idempotency.recall(session, "datasets", "k-1", "f" * 64) is None  # per scope


def test_a_key_is_forgotten_after_its_time(session: Session) -> None:
    now = utcnow()
    idempotency.remember(session, "jobs", "old", "f" * 64, "job-a", ttl_s=60, now=now)
    later = now + timedelta(seconds=61)
    assert idempotency.recall(session, "jobs", "old", "e" * 64, now=later) is None
    idempotency.remember(session, "jobs", "old", "e" * 64, "job-b", ttl_s=60, now=later)
    assert idempotency.recall(session, "jobs", "old", "e" * 64, now=later).resource == "job-b"


def test_two_requests_with_one_key_cannot_both_commit(sessions: sessionmaker[Session]) -> None:
    with sessions() as first, sessions() as second:
        idempotency.remember(first, "jobs", "race", "f" * 64, "job-a", ttl_s=60)
        first.commit()
        with pytest.raises(IntegrityError):
            idempotency.remember(second, "jobs", "race", "f" * 64, "job-b", ttl_s=60)
            second.commit()


@pytest.mark.parametrize("key", ["", "a b", "x" * 256, "é", "a\x00"])
def test_malformed_keys(session: Session, key: str) -> None:
    with pytest.raises(InvalidValueError):
        idempotency.recall(session, "jobs", key, "f" * 64)
