"""Persistence: SQL tables for jobs, the model registry and metric history; artifact files.

Modules, one concern each: `db` (engines, sessions), `tables` (ORM tables), `migrate`
(Alembic), `jobs`, `registry`, `metrics`, `artifacts`, `names` (identifier validation),
`errors`. Functions take a `Session` and leave the commit to the caller.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ganserve.store.artifacts import ArtifactStore
from ganserve.store.db import make_engine, make_session_factory, session_scope
from ganserve.store.errors import (
    InvalidValueError,
    RecordNotFoundError,
    StaleAttemptError,
    StateConflictError,
    StoreError,
)
from ganserve.store.facade import Store
from ganserve.store.migrate import upgrade_database
from ganserve.store.tables import Job, MetricPoint, ModelAlias, ModelVersion

__all__ = [
    "ArtifactStore",
    "StateConflictError",
    "InvalidValueError",
    "Job",
    "MetricPoint",
    "ModelAlias",
    "ModelVersion",
    "RecordNotFoundError",
    "Session",
    "StaleAttemptError",
    "Store",
    "StoreError",
    "make_engine",
    "make_session_factory",
    "session_scope",
    "upgrade_database",
]
