"""Engines, URL handling and session scopes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from ganserve.settings import Settings
from ganserve.store import Store, jobs, make_engine, make_session_factory, session_scope
from ganserve.store.db import normalize_url


def test_sqlite_engine_creates_dir_and_sets_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}")
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert connection.scalar(text("PRAGMA foreign_keys")) == 1
            assert connection.scalar(text("PRAGMA busy_timeout")) == 30_000
        assert (tmp_path / "a" / "b" / "x.db").exists()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db:5432/ganserve",
        "postgresql://u:p@db:5432/ganserve",
        "postgresql+psycopg://u:p@db:5432/ganserve",
    ],
)
def test_postgres_urls_use_psycopg(url: str) -> None:
    assert normalize_url(url) == "postgresql+psycopg://u:p@db:5432/ganserve"
    engine = make_engine(url)  # connects lazily
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    engine.dispose()


def test_unsupported_backend() -> None:
    with pytest.raises(ValueError, match="unsupported backend 'mysql'"):
        make_engine("mysql://u@h/db")


def test_session_scope_commits_and_rolls_back(db_url: str) -> None:
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    try:
        with session_scope(factory) as session:
            kept = jobs.create_job(session, "m", {}, total_steps=1)
        with pytest.raises(RuntimeError), session_scope(factory) as session:
            jobs.create_job(session, "m", {}, total_steps=1)
            raise RuntimeError("boom")
        with session_scope(factory) as session:
            page, total = jobs.list_jobs(session)
            assert total == 1 and page[0].id == kept.id
        assert kept.status == "queued"  # still readable after commit
    finally:
        engine.dispose()


def test_store_imports_no_http_or_celery() -> None:
    code = (
        "import sys, ganserve.store, ganserve.store.jobs, ganserve.store.registry, "
        "ganserve.store.metrics\n"
        "bad = [m for m in ('fastapi', 'starlette', 'celery', 'ganserve.service', "
        "'ganserve.worker', 'ganserve.cli', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_store_facade_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "GANSERVE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path / "data")
    store = Store.from_settings(settings)
    try:
        assert store.artifacts.root == (tmp_path / "data" / "artifacts").resolve()
        with store.session() as session:
            job = jobs.create_job(session, "m", {}, total_steps=1)
        with store.session() as session:
            assert jobs.get_job(session, job.id).status == "queued"
        assert (tmp_path / "data" / "ganserve.db").exists()
    finally:
        store.close()
