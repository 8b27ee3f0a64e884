"""The model registry: versions that finished jobs export, and aliases pointing at them.

Versions are numbered 1, 2, 3, ... per model name and never reused: deleting a version only
sets its `deleted_at`, and the next version is one more than the highest ever registered.
A job registers at most one version, ever (`register_version` is idempotent per job).
A model exists while it has at least one live (not deleted) version.

Aliases: `latest` is implicit (the newest live version) and cannot be set or deleted; other
aliases (`production`, `best`, ...) are stored, and removed when their version is deleted.

A version reference ("3", "v3", "latest", "best") is read in one place: `version_number`
(a number or None), `is_pinned` (a number: its bytes never change), `resolve` (the full
read, errors naming what exists) and `find_live` (the same reading in one lean query, for
the sampling hot path).

Return types: single versions are ORM `ModelVersion` objects (sessions from
`make_session_factory` keep them readable after commit); whole models are frozen dataclasses
(`ModelSummary`, `ModelDetail`). Functions flush; the caller commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    exc,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from ganserve.store.errors import InvalidValueError, RecordNotFoundError
from ganserve.store.names import validate_alias, validate_model_name
from ganserve.store.tables import JSONType, ModelAlias, ModelVersion, UTCDateTime, utcnow

LATEST = "latest"
_VERSION_REF = re.compile(r"^v?([0-9]{1,9})$")  # a version number: "3", "v3", " V3 "

# find_live's three lean queries: the live row's id, number and folder, nothing parsed.
_ROW = select(ModelVersion.id, ModelVersion.version, ModelVersion.artifact_path)
_BY_NUMBER = _ROW.where(
    ModelVersion.name == bindparam("name"),
    ModelVersion.version == bindparam("version"),
    ModelVersion.deleted_at.is_(None),
)
_LATEST = (
    _ROW.where(ModelVersion.name == bindparam("name"), ModelVersion.deleted_at.is_(None))
    .order_by(ModelVersion.version.desc())
    .limit(1)
)
_BY_ALIAS = _ROW.join(
    ModelAlias,
    (ModelAlias.name == ModelVersion.name) & (ModelAlias.version == ModelVersion.version),
).where(
    ModelAlias.name == bindparam("name"),
    ModelAlias.alias == bindparam("alias"),
    ModelVersion.deleted_at.is_(None),
)


@dataclass(frozen=True)
class LiveRow:
    """The live registry row a version reference names, as `find_live` reads it."""

    id: int  # the row's primary key: a row's description never changes
    name: str
    version: int
    artifact_path: str  # relative to the artifacts dir


@dataclass(frozen=True)
class ModelSummary:
    """One model in the registry listing."""

    name: str
    versions: int  # live versions
    latest_version: int
    aliases: dict[str, int]  # includes the implicit `latest`
    created_at: datetime  # first live version
    updated_at: datetime  # newest live version or alias change


@dataclass(frozen=True)
class ModelDetail:
    """One model with its live versions (oldest first) and aliases."""

    name: str
    versions: list[ModelVersion]
    aliases: dict[str, int]  # includes the implicit `latest`
    created_at: datetime
    updated_at: datetime

    @property
    def latest_version(self) -> int:
        return self.versions[-1].version


def default_artifact_path(name: str, version: int) -> str:
    """Where a version's files go, relative to the artifacts dir (= ArtifactStore.model_dir)."""
    return f"models/{name}/v{version}"


def _finite_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """PostgreSQL's JSON refuses NaN and infinity: such values (a metric that could not be
    computed, e.g. a class with too few samples) are left out."""
    return {
        key: value
        for key, value in values.items()
        if not (isinstance(value, float) and not math.isfinite(value))
    }


def register_version(
    session: Session,
    name: str,
    job_id: str | None,
    step: int,
    artifact_path: str | None,
    description: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> ModelVersion:
    """Register the next version of `name`, or return the one `job_id` already registered.

    `artifact_path` is relative to the artifacts dir; None = `models/<name>/v<version>`.
    The existing version is returned even if it was deleted since (a job never registers
    twice).
    """
    validate_model_name(name)
    now = now or utcnow()
    if job_id is not None:
        existing = _version_of_job(session, job_id)
        if existing is not None:
            return existing
    _lock_model_name(session, name)
    next_version = (
        select(func.coalesce(func.max(ModelVersion.version), 0) + 1)
        .where(ModelVersion.name == name)
        .scalar_subquery()
    )
    source = select(
        literal(name, String()),
        next_version,
        literal(job_id, String()),
        literal(step, Integer()),
        literal(artifact_path or "", Text()),
        literal(dict(description), JSONType),
        literal(_finite_values(metrics or {}), JSONType),
        literal(now, UTCDateTime()),
    )
    if job_id is not None:
        # One statement: on SQLite it runs under the write lock, so it is atomic by itself.
        source = source.where(~exists().where(ModelVersion.job_id == job_id))
    columns = [
        "name",
        "version",
        "job_id",
        "step",
        "artifact_path",
        "description",
        "metrics",
        "created_at",
    ]
    inserted = session.execute(
        insert(ModelVersion).from_select(columns, source).returning(ModelVersion.id)
    ).first()
    if inserted is None:  # a concurrent call for the same job won
        existing = _version_of_job(session, job_id) if job_id is not None else None
        if existing is None:
            raise AssertionError(f"no version registered for job {job_id!r}")
        return existing
    version_id = int(inserted[0])
    if artifact_path is None:
        number = session.scalar(select(ModelVersion.version).where(ModelVersion.id == version_id))
        assert number is not None
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.id == version_id)
            .values(artifact_path=default_artifact_path(name, number))
            .execution_options(synchronize_session=False)
        )
    result = session.get(ModelVersion, version_id, populate_existing=True)
    assert result is not None
    return result


def list_models(session: Session) -> list[ModelSummary]:
    """Every model with at least one live version, by name."""
    rows = session.execute(
        select(
            ModelVersion.name,
            func.count(),
            func.max(ModelVersion.version),
            func.min(ModelVersion.created_at),
            func.max(ModelVersion.created_at),
        )
        .where(ModelVersion.deleted_at.is_(None))
        .group_by(ModelVersion.name)
        .order_by(ModelVersion.name)
    ).all()
    aliases: dict[str, dict[str, int]] = {}
    alias_updated: dict[str, datetime] = {}
    for alias in _live_aliases(session, None):
        aliases.setdefault(alias.name, {})[alias.alias] = alias.version
        alias_updated[alias.name] = max(
            alias_updated.get(alias.name, alias.updated_at), alias.updated_at
        )
    summaries = []
    for name, count, latest, created, newest in rows:
        updated = max(newest, alias_updated.get(name, newest))
        summaries.append(
            ModelSummary(
                name=name,
                versions=int(count),
                latest_version=int(latest),
                aliases={LATEST: int(latest), **dict(sorted(aliases.get(name, {}).items()))},
                created_at=created,
                updated_at=updated,
            )
        )
    return summaries


def get_model(session: Session, name: str) -> ModelDetail:
    """A model's live versions and aliases; RecordNotFoundError if it has no live version."""
    versions = _live_versions(session, name)
    if not versions:
        raise _model_not_found(name)
    stored = _live_aliases(session, name)
    updated = max([versions[-1].created_at, *(alias.updated_at for alias in stored)])
    return ModelDetail(
        name=name,
        versions=versions,
        aliases={LATEST: versions[-1].version, **{a.alias: a.version for a in stored}},
        created_at=versions[0].created_at,
        updated_at=updated,
    )


def get_version(
    session: Session, name: str, version: int, *, include_deleted: bool = False
) -> ModelVersion:
    """One version of a model; RecordNotFoundError naming the versions that exist."""
    where = [ModelVersion.name == name, ModelVersion.version == version]
    if not include_deleted:
        where.append(ModelVersion.deleted_at.is_(None))
    found = session.scalars(
        select(ModelVersion).where(*where).execution_options(populate_existing=True)
    ).first()
    if found is None:
        raise _version_not_found(session, name, version)
    return found


def version_number(ref: str) -> int | None:
    """The number a version reference names ("3", "v3"); None for an alias."""
    match = _VERSION_REF.fullmatch(ref.strip().lower()) if isinstance(ref, str) else None
    return None if match is None else int(match.group(1))


def is_pinned(ref: str) -> bool:
    """Whether `ref` names a version by number (what it names never changes), not an alias."""
    return version_number(ref) is not None


def find_live(connection: Connection, name: str, ref: str) -> LiveRow | None:
    """The live row `ref` names, in one lean query; None where `resolve` would raise.

    The same reading of `ref` as `resolve`: a number, `latest` (the newest live version) or
    a stored alias. Nothing else is read, so a caller that keeps what it parsed from a row
    (by `LiveRow.id`) answers a known row without the ORM.
    """
    number = version_number(ref)
    if number is not None:
        statement, params = _BY_NUMBER, {"name": name, "version": number}
    elif ref == LATEST:
        statement, params = _LATEST, {"name": name}
    else:
        statement, params = _BY_ALIAS, {"name": name, "alias": ref}
    row = connection.execute(statement, params).first()
    return None if row is None else LiveRow(int(row[0]), name, int(row[1]), str(row[2]))


class LiveReader:
    """`find_live` on one connection kept for it, for the sampling path's per-request read.

    A pool checkout and the reset on return cost more CPU than the query itself (about 100 of
    260 us per read, bench/README.md, issue 18). Reads take turns (a lock); each one ends its
    transaction (rollback), so the next sees every commit made since, by any process. A kept
    connection that fails (the database restarted) is dropped and the read retried once on a
    fresh one from the pool; a fresh one's error is raised as it is (an outage: 503). `close`
    gives the connection back.

    On a SQLite file the query is skipped while nothing has changed: SQLite's own change
    counter (`PRAGMA data_version`) moves on the kept connection whenever any other
    connection, of this process or another, commits to the file, so a row read since the
    last move is still the row; after a move every answer is read again. The counter cannot
    miss a commit (SQLite keeps it, not the writers), so a moved alias is still seen by the
    next request. PostgreSQL has no such counter on a connection: it is read every time.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._lock = threading.Lock()
        self._watches_changes = _has_change_counter(engine)
        self._counter: object = None  # the kept connection's data_version the answers hold at
        self._answers: dict[tuple[str, str], LiveRow] = {}

    def find(self, name: str, ref: str) -> LiveRow | None:
        with self._lock:
            while True:
                kept, self._connection = self._connection, None
                connection = kept or self._engine.connect()
                try:
                    found = self._find_on(connection, name, ref, fresh=kept is None)
                except BaseException as error:
                    with contextlib.suppress(Exception):
                        connection.close()
                    if kept is not None and isinstance(error, _LOST_CONNECTION):
                        continue  # a stale kept connection: once more on a fresh one
                    raise
                self._connection = connection
                return found

    def _find_on(self, connection: Connection, name: str, ref: str, fresh: bool) -> LiveRow | None:
        if self._watches_changes:
            # each connection counts from its own start: a fresh one forgets the answers
            counter = _data_version(connection)
            if fresh or counter != self._counter:
                self._answers.clear()
                self._counter = counter
            known = self._answers.get((name, ref))
            if known is not None:
                return known
        found = find_live(connection, name, ref)
        connection.rollback()
        if self._watches_changes and found is not None:
            if len(self._answers) >= MAX_KEPT_ANSWERS:
                self._answers.clear()  # many spellings of refs ("v3", "v03"...): start over
            self._answers[(name, ref)] = found
        return found

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            self._answers.clear()
        if connection is not None:
            connection.close()


# answers a LiveReader keeps between SQLite commits; requests choose the refs' spellings
MAX_KEPT_ANSWERS = 1024
# what a kept connection that died raises: through SQLAlchemy, or from the pragma on sqlite3
_LOST_CONNECTION = (exc.DBAPIError, sqlite3.Error)


def _has_change_counter(engine: Engine) -> bool:
    """SQLite on a file, whose pool hands out a connection per checkout (not one shared)."""
    url = engine.url
    return (
        url.get_backend_name() == "sqlite"
        and bool(url.database)
        and url.database != ":memory:"
        and "mode=memory" not in str(url)
        and isinstance(engine.pool, QueuePool)
    )


def _data_version(connection: Connection) -> object:
    # On the driver's connection: a PRAGMA opens no transaction, and SQLAlchemy's own
    # statement path costs more than the pragma (bench/README.md, issue 18).
    cursor = connection.connection.driver_connection.execute("PRAGMA data_version")  # type: ignore[union-attr]
    return cursor.fetchone()[0]


def resolve(session: Session, name: str, ref: str) -> ModelVersion:
    """The live version `ref` names: a number ("3" or "v3") or an alias ("latest", "best")."""
    number = version_number(ref)
    if number is not None:
        return get_version(session, name, number)
    versions = _live_versions(session, name)
    if not versions:
        raise _model_not_found(name)
    if ref == LATEST:
        return versions[-1]
    by_number = {v.version: v for v in versions}
    for alias in _live_aliases(session, name):
        if alias.alias == ref:
            return by_number[alias.version]
    choices = ", ".join([LATEST, *(a.alias for a in _live_aliases(session, name))])
    numbers = ", ".join(str(v.version) for v in versions)
    raise RecordNotFoundError(
        "model alias",
        f"{name}/{ref}",
        f"model {name!r} has no version or alias {ref!r}; versions: {numbers}; aliases: {choices}",
    )


def delete_version(
    session: Session, name: str, version: int, *, now: datetime | None = None
) -> ModelVersion:
    """Soft-delete a version and drop the aliases pointing at it; returns the deleted row.

    Its number is never reused; `latest` moves to the newest remaining version. Removing the
    files (`ArtifactStore.remove_model_dir`) is up to the caller, after commit.
    """
    now = now or utcnow()
    row = session.execute(
        update(ModelVersion)
        .where(
            ModelVersion.name == name,
            ModelVersion.version == version,
            ModelVersion.deleted_at.is_(None),
        )
        .values(deleted_at=now)
        .returning(ModelVersion.id)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        raise _version_not_found(session, name, version)
    session.execute(
        delete(ModelAlias)
        .where(ModelAlias.name == name, ModelAlias.version == version)
        .execution_options(synchronize_session=False)
    )
    deleted = session.get(ModelVersion, int(row[0]), populate_existing=True)
    assert deleted is not None
    return deleted


def set_alias(
    session: Session, name: str, alias: str, version: int, *, now: datetime | None = None
) -> ModelVersion:
    """Point `alias` at a live version (creating or moving it); returns that version.

    InvalidValueError for a malformed alias or `latest`; RecordNotFoundError for a missing version.
    """
    validate_alias(alias)
    target = get_version(session, name, version)
    now = now or utcnow()
    values = {"name": name, "alias": alias, "version": version, "updated_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(ModelAlias).values(**values)
        stmt: Any = pg_stmt.on_conflict_do_update(
            index_elements=["name", "alias"],
            set_={"version": pg_stmt.excluded.version, "updated_at": pg_stmt.excluded.updated_at},
        )
    elif dialect == "sqlite":
        lite_stmt = sqlite.insert(ModelAlias).values(**values)
        stmt = lite_stmt.on_conflict_do_update(
            index_elements=["name", "alias"],
            set_={
                "version": lite_stmt.excluded.version,
                "updated_at": lite_stmt.excluded.updated_at,
            },
        )
    else:  # pragma: no cover - make_engine only builds the two above
        raise InvalidValueError("database", f"unsupported database {dialect!r}")
    session.execute(stmt.execution_options(synchronize_session=False))
    return target


def delete_alias(session: Session, name: str, alias: str) -> None:
    """Remove a stored alias; RecordNotFoundError naming the aliases that exist."""
    validate_alias(alias)
    row = session.execute(
        delete(ModelAlias)
        .where(ModelAlias.name == name, ModelAlias.alias == alias)
        .returning(ModelAlias.alias)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        if not _live_versions(session, name):
            raise _model_not_found(name)
        existing = ", ".join(a.alias for a in _live_aliases(session, name)) or "none"
        raise RecordNotFoundError(
            "model alias",
            f"{name}/{alias}",
            f"model {name!r} has no alias {alias!r}; settable aliases: {existing}",
        )


def _version_of_job(session: Session, job_id: str) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.job_id == job_id)
        .execution_options(populate_existing=True)
    ).first()


def _live_versions(session: Session, name: str) -> list[ModelVersion]:
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.name == name, ModelVersion.deleted_at.is_(None))
            .order_by(ModelVersion.version)
            .execution_options(populate_existing=True)
        ).all()
    )


def _live_aliases(session: Session, name: str | None) -> list[ModelAlias]:
    """Stored aliases whose version is live (of one model, or of all when name is None)."""
    stmt = (
        select(ModelAlias)
        .join(
            ModelVersion,
            (ModelVersion.name == ModelAlias.name) & (ModelVersion.version == ModelAlias.version),
        )
        .where(ModelVersion.deleted_at.is_(None))
        .order_by(ModelAlias.name, ModelAlias.alias)
        .execution_options(populate_existing=True)
    )
    if name is not None:
        stmt = stmt.where(ModelAlias.name == name)
    return list(session.scalars(stmt).all())


def _lock_model_name(session: Session, name: str) -> None:
    """Serialize registrations of one name (PostgreSQL; SQLite's insert is atomic alone)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
    session.execute(select(func.pg_advisory_xact_lock(key)))


def _model_not_found(name: str) -> RecordNotFoundError:
    return RecordNotFoundError("model", name, f"model {name!r} not found (it has no versions)")


def _version_not_found(session: Session, name: str, version: int) -> RecordNotFoundError:
    versions = _live_versions(session, name)
    if not versions:
        return _model_not_found(name)
    numbers = ", ".join(str(v.version) for v in versions)
    return RecordNotFoundError(
        "model version",
        f"{name}/{version}",
        f"model {name!r} has no version {version}; versions: {numbers}",
    )
