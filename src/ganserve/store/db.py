"""Engines and sessions for SQLite (the default) and PostgreSQL (production).

SQLite runs in WAL mode with a busy timeout and foreign keys on. Its driver (pysqlite) keeps
its default transaction handling: a transaction begins at the first write, so reads before
it see the latest committed data, like PostgreSQL's default READ COMMITTED. The functions in
this package are written for that isolation level (single-statement conditional updates,
row locks taken by a write before any read that decides a later write).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ganserve.store.errors import DatabaseUnavailableError, InvalidValueError

# Milliseconds a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
# The base class of every error the SQL layer raises: what the API maps (an outage: a 503),
# named here so that no layer above the store imports sqlalchemy.
DriverError = exc.SQLAlchemyError
# A write that broke a unique or foreign-key constraint (e.g. a concurrent insert won).
ConstraintError = exc.IntegrityError


def normalize_url(url: str) -> str:
    """Rewrite `postgres://` and `postgresql://` URLs to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for a SQLite or PostgreSQL URL (extra kwargs go to create_engine)."""
    sa_url = make_url(normalize_url(url))
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        database = sa_url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(sa_url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "before_cursor_execute", _refuse_nul)
        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(sa_url, **kwargs)
        event.listen(engine, "before_cursor_execute", _refuse_nul)
        return engine
    raise ValueError(
        f"database URL: unsupported backend {backend!r}; use sqlite:///path or postgresql://..."
    )


def outage_of(error: BaseException) -> DatabaseUnavailableError | None:
    """The outage `error` means, or None when it is something else (a bug, bad data).

    Connection refused or lost, a pool exhausted, SQLite unable to open its file or locked
    past the busy timeout: all retryable once the database is back. The driver's text (hosts,
    ports, paths) stays in the log, never in the returned error.
    """
    if isinstance(error, DatabaseUnavailableError):
        return error
    if isinstance(error, exc.TimeoutError):  # the connection pool: none free in time
        return DatabaseUnavailableError("no database connection is free; retry shortly")
    if isinstance(error, (exc.OperationalError, exc.InterfaceError)) or (
        isinstance(error, exc.DBAPIError) and error.connection_invalidated
    ):
        return DatabaseUnavailableError()
    return None


def _refuse_nul(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """The last line before the driver: no text parameter may hold a NUL byte.

    PostgreSQL cannot store one (psycopg raises DataError: a 500); SQLite would. Routes
    validate each name first (names.py) so their errors name the field; this catches the rest.
    """
    rows = parameters if executemany else [parameters]
    for row in rows:
        values = row.values() if isinstance(row, dict) else row or ()
        for value in values:
            if isinstance(value, str) and "\x00" in value:
                raise InvalidValueError("text", "must not contain a NUL character (\\u0000)")


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (expire_on_commit=False)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
