"""Fresh databases for tests: SQLite files, and PostgreSQL when GANSERVE_TEST_DATABASE_URL is set.

PostgreSQL tests need GANSERVE_TEST_DATABASE_URL, an admin URL such as
postgresql+psycopg://postgres@127.0.0.1:5432/test; each use gets its own database
`ganserve_test_<hex>`, dropped afterwards. Without the variable they are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ganserve.store import make_engine
from ganserve.store.db import normalize_url

PG_ENV = "GANSERVE_TEST_DATABASE_URL"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database (not migrated), removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'ganserve.db'}"
        return
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(
            f"set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) "
            "to run the PostgreSQL tests"
        )
    name = f"ganserve_test_{uuid.uuid4().hex[:16]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(normalize_url(admin_url)).set(database=name)
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
