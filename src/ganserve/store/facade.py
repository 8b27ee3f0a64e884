"""`Store`: the engine, session factory and artifact store of one process, built together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from ganserve.settings import Settings
from ganserve.store.artifacts import ArtifactStore
from ganserve.store.db import make_engine, make_session_factory, session_scope
from ganserve.store.migrate import upgrade_database


@dataclass(frozen=True)
class Store:
    """What the service and the worker need to persist: SQL sessions and artifact files."""

    engine: Engine
    sessions: sessionmaker[Session]
    artifacts: ArtifactStore

    @classmethod
    def open(cls, database_url: str, artifacts_dir: Path | str, *, migrate: bool = True) -> Store:
        """Connect (applying migrations first unless `migrate` is False)."""
        if migrate:
            upgrade_database(database_url)
        engine = make_engine(database_url)
        return cls(engine, make_session_factory(engine), ArtifactStore(artifacts_dir))

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> Store:
        return cls.open(settings.resolved_database_url, settings.artifacts_dir, migrate=migrate)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed at the end of the block (rolled back if it raises)."""
        with session_scope(self.sessions) as session:
            yield session

    def ping(self) -> None:
        """One round trip to the database (readiness); raises if it cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
