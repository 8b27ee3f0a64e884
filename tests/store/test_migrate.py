"""Migrations: idempotent, safe to run concurrently, and in step with the ORM tables."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from ganserve.store import make_engine, upgrade_database
from ganserve.store.migrate import current_revision, head_revision
from ganserve.store.tables import Base


def test_upgrade_is_idempotent(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    upgrade_database(empty_db_url)
    upgrade_database(empty_db_url)
    assert current_revision(empty_db_url) == head_revision() == "0002"
    engine = make_engine(empty_db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == {
        "alembic_version", "jobs", "model_versions", "model_aliases", "metric_points",
        "idempotency_keys",
    }  # fmt: skip


def test_migrated_schema_matches_metadata(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_concurrent_upgrades(empty_db_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade_database(empty_db_url)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert current_revision(empty_db_url) == head_revision()
