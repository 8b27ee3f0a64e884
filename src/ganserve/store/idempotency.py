"""Idempotency keys: a retried create (same key) gets what the first one made.

The route looks the key up first (`recall`); if there is none it creates the resource and
`remember`s the key in the same transaction, so the key and the job commit together or not
at all. Two requests racing with one key: the second commit violates the primary key
(IntegrityError); the caller rolls back and recalls the winner's answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ganserve.store.errors import InvalidValueError, StateConflictError
from ganserve.store.names import echo
from ganserve.store.tables import IdempotencyKey, utcnow

# Visible ASCII, 1-255 characters (a UUID is the usual choice).
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)


@dataclass(frozen=True)
class Remembered:
    resource: str  # the id of what the first request created


def validate_key(key: str, field: str = "Idempotency-Key") -> str:
    if not _KEY.fullmatch(key):
        raise InvalidValueError(
            field, f"invalid key {echo(key)}: 1-255 visible ASCII characters (a UUID, say)"
        )
    return key


def lookup(
    session: Session, scope: str, key: str, *, now: datetime | None = None
) -> tuple[str, str] | None:
    """(fingerprint, resource) of a remembered key, for requests whose fingerprint can only
    be known after reading them (uploads); None if the key is unknown or expired."""
    row = session.get(IdempotencyKey, (scope, validate_key(key)))
    if row is None or row.expires_at <= (now or utcnow()):
        return None
    return row.fingerprint, row.resource


def conflict(key: str) -> StateConflictError:
    return StateConflictError(
        f"the Idempotency-Key {echo(key)} was used with a different request; "
        "send a new key for a new request"
    )


def recall(
    session: Session, scope: str, key: str, fingerprint: str, *, now: datetime | None = None
) -> Remembered | None:
    """What `key` created, if it is remembered; StateConflictError if it came with another
    request (a different body: the client reused a key by mistake)."""
    found = lookup(session, scope, key, now=now)
    if found is None:
        return None
    if found[0] != fingerprint:
        raise conflict(key)
    return Remembered(found[1])


def remember(
    session: Session,
    scope: str,
    key: str,
    fingerprint: str,
    resource: str,
    ttl_s: float,
    *,
    now: datetime | None = None,
) -> None:
    """Store the key (flushed: a concurrent duplicate fails here or at commit), dropping
    expired keys of the scope first."""
    now = now or utcnow()
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.scope == scope, IdempotencyKey.expires_at <= now
        )
    )
    session.add(
        IdempotencyKey(
            scope=scope,
            key=validate_key(key),
            fingerprint=fingerprint,
            resource=resource,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    session.flush()
