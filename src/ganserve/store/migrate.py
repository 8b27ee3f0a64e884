"""Apply the Alembic migrations in `ganserve/store/migrations` without an alembic.ini.

`upgrade_database(url)` is idempotent and safe when several processes start at once: on
PostgreSQL it holds a session-level advisory lock while upgrading, on SQLite an exclusive
lock on a file next to the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, pool, select
from sqlalchemy.engine import make_url

from ganserve.store.db import make_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Key of the PostgreSQL advisory lock held while migrating (any constant bigint).
_PG_LOCK_KEY = 0x67616E7365727665  # "ganserve"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for our migrations; `url` unset = the ganserve settings' database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["url"] = normalize_url(url)
    return config


def head_revision() -> str | None:
    """The newest revision shipped with this package."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(url: str) -> str | None:
    """The revision the database is at (None = never migrated)."""
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade_database(url: str) -> None:
    """Migrate the database at `url` to the newest revision (a no-op when already there)."""
    url = normalize_url(url)
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with _migration_lock(url), engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(select(func.pg_advisory_lock(_PG_LOCK_KEY)))
                connection.commit()
            try:
                _upgrade(connection, url)
            finally:
                if connection.dialect.name == "postgresql":
                    connection.rollback()
                    connection.execute(select(func.pg_advisory_unlock(_PG_LOCK_KEY)))
                    connection.commit()
    finally:
        engine.dispose()


def _upgrade(connection: Connection, url: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    connection.commit()


@contextlib.contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """On a SQLite file, an exclusive flock on `<db>.migrate.lock`; otherwise nothing."""
    sa_url = make_url(url)
    database = sa_url.database
    if sa_url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    lock_path = Path(database).expanduser().with_name(Path(database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
