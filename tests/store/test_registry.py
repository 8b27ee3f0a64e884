"""The model registry: versions, idempotent registration, soft delete, aliases, resolve."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from ganserve.store import jobs, registry
from ganserve.store.errors import InvalidValueError, RecordNotFoundError
from ganserve.store.tables import ModelVersion

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DESCRIPTION = {"architecture": "mlp", "z_dim": 100, "image_shape": [1, 8, 8]}


def job_id(session: Session, name: str = "digits") -> str:
    job = jobs.create_job(session, name, {"name": name}, total_steps=10)
    session.commit()
    return job.id


def register(
    session: Session,
    name: str = "digits",
    job: str | None = None,
    step: int = 100,
    artifact_path: str | None = None,
    now: datetime | None = None,
) -> ModelVersion:
    version = registry.register_version(
        session,
        name,
        job if job is not None else job_id(session, name),
        step=step,
        artifact_path=artifact_path,
        description=DESCRIPTION,
        metrics={"fd": 12.5},
        now=now,
    )
    session.commit()
    return version


def test_register_numbers_versions_per_name(session: Session) -> None:
    v1 = register(session)
    v2 = register(session, artifact_path="jobs/abc/export")
    other = register(session, "faces")
    assert (v1.name, v1.version, v2.version, other.version) == ("digits", 1, 2, 1)
    assert v1.artifact_path == "models/digits/v1"
    assert v2.artifact_path == "jobs/abc/export"
    assert v1.description == DESCRIPTION and v1.metrics == {"fd": 12.5} and v1.step == 100
    assert v1.created_at.tzinfo is not None and v1.deleted_at is None


def test_metrics_that_could_not_be_computed_are_left_out(session: Session) -> None:
    # PostgreSQL's JSON refuses NaN: a class with too few samples must not fail registration
    version = registry.register_version(
        session, "digits", job_id(session), step=10, artifact_path=None,
        description=DESCRIPTION, metrics={"fd": 3.0, "class_fd.0": float("nan"),
                                          "kid": float("inf"), "coverage": 10.0},
    )  # fmt: skip
    session.commit()
    assert registry.get_version(session, "digits", version.version).metrics == {
        "fd": 3.0,
        "coverage": 10.0,
    }


def test_register_twice_for_one_job_yields_one_version(session: Session) -> None:
    job = job_id(session)
    first = register(session, job=job, step=100)
    again = register(session, job=job, step=200, artifact_path="elsewhere")
    assert again.id == first.id and again.version == 1 and again.step == 100
    assert len(registry.get_model(session, "digits").versions) == 1


def test_concurrent_registration_for_one_job(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        job = job_id(s)
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            with sessions() as session:
                barrier.wait()
                results.append(register(session, job=job).version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == [1, 1, 1, 1]


def test_concurrent_registrations_of_one_name_get_distinct_versions(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        job_ids = [job_id(s) for _ in range(4)]
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run(job: str) -> None:
        try:
            with sessions() as session:
                barrier.wait()
                results.append(register(session, job=job).version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == [1, 2, 3, 4]


def test_version_numbers_are_not_reused_after_delete(session: Session) -> None:
    register(session)
    register(session)
    deleted = registry.delete_version(session, "digits", 2)
    session.commit()
    assert deleted.version == 2 and deleted.deleted_at is not None
    assert register(session).version == 3
    # Even with every version deleted, numbering goes on.
    for version in (1, 3):
        registry.delete_version(session, "digits", version)
    session.commit()
    assert register(session).version == 4


def test_register_after_delete_returns_the_jobs_deleted_version(session: Session) -> None:
    job = job_id(session)
    register(session, job=job)
    registry.delete_version(session, "digits", 1)
    session.commit()
    again = register(session, job=job)
    assert again.version == 1 and again.deleted_at is not None


def test_latest_moves_after_delete(session: Session) -> None:
    for _ in range(3):
        register(session)
    assert registry.resolve(session, "digits", "latest").version == 3
    registry.delete_version(session, "digits", 3)
    session.commit()
    assert registry.resolve(session, "digits", "latest").version == 2
    assert registry.get_model(session, "digits").aliases["latest"] == 2


def test_delete_missing_version(session: Session) -> None:
    register(session)
    with pytest.raises(RecordNotFoundError, match="model 'digits' has no version 5; versions: 1"):
        registry.delete_version(session, "digits", 5)
    registry.delete_version(session, "digits", 1)
    with pytest.raises(RecordNotFoundError, match="model 'digits' not found"):
        registry.delete_version(session, "digits", 1)


def test_get_version(session: Session) -> None:
    register(session)
    register(session)
    assert registry.get_version(session, "digits", 2).version == 2
    registry.delete_version(session, "digits", 2)
    with pytest.raises(RecordNotFoundError, match="has no version 2; versions: 1"):
        registry.get_version(session, "digits", 2)
    assert registry.get_version(session, "digits", 2, include_deleted=True).deleted_at
    with pytest.raises(RecordNotFoundError, match="model 'nope' not found"):
        registry.get_version(session, "nope", 1)


def test_aliases_set_move_and_delete(session: Session) -> None:
    for _ in range(3):
        register(session)
    assert registry.set_alias(session, "digits", "production", 1).version == 1
    registry.set_alias(session, "digits", "best", 2)
    session.commit()
    assert registry.resolve(session, "digits", "production").version == 1
    registry.set_alias(session, "digits", "production", 3, now=T0 + timedelta(days=1))
    session.commit()
    assert registry.resolve(session, "digits", "production").version == 3
    model = registry.get_model(session, "digits")
    assert model.aliases == {"latest": 3, "best": 2, "production": 3}
    assert model.updated_at == T0 + timedelta(days=1)

    registry.delete_alias(session, "digits", "best")
    session.commit()
    with pytest.raises(RecordNotFoundError, match="no alias 'best'; settable aliases: production"):
        registry.delete_alias(session, "digits", "best")
    with pytest.raises(RecordNotFoundError, match="no version or alias 'best'"):
        registry.resolve(session, "digits", "best")


def test_invalid_aliases(session: Session) -> None:
    register(session)
    with pytest.raises(InvalidValueError, match="'latest' is implicit"):
        registry.set_alias(session, "digits", "latest", 1)
    with pytest.raises(InvalidValueError, match="'latest' is implicit"):
        registry.delete_alias(session, "digits", "latest")
    for bad in ("Production", "1st", "", "a" * 33, "has space", "../x"):
        with pytest.raises(InvalidValueError, match="invalid alias"):
            registry.set_alias(session, "digits", bad, 1)
    with pytest.raises(RecordNotFoundError, match="has no version 7"):
        registry.set_alias(session, "digits", "production", 7)


def test_deleting_a_version_removes_its_aliases(session: Session) -> None:
    register(session)
    register(session)
    registry.set_alias(session, "digits", "production", 2)
    registry.set_alias(session, "digits", "best", 1)
    registry.delete_version(session, "digits", 2)
    session.commit()
    assert registry.get_model(session, "digits").aliases == {"latest": 1, "best": 1}
    with pytest.raises(RecordNotFoundError, match="aliases: latest, best"):
        registry.resolve(session, "digits", "production")


def test_resolve(session: Session) -> None:
    register(session)
    register(session)
    assert registry.resolve(session, "digits", "1").version == 1
    assert registry.resolve(session, "digits", "v2").version == 2
    assert registry.resolve(session, "digits", "latest").version == 2
    with pytest.raises(
        RecordNotFoundError, match="model 'digits' has no version 9; versions: 1, 2"
    ):
        registry.resolve(session, "digits", "9")
    with pytest.raises(
        RecordNotFoundError, match="no version or alias 'prod'; versions: 1, 2; aliases: latest"
    ):
        registry.resolve(session, "digits", "prod")
    with pytest.raises(RecordNotFoundError, match="model 'other' not found"):
        registry.resolve(session, "other", "latest")
    with pytest.raises(RecordNotFoundError, match="model 'other' not found"):
        registry.resolve(session, "other", "1")


def test_find_live_reads_a_ref_as_resolve_does(session: Session) -> None:
    """The sampling path's lean query: same row as `resolve` for every kind of reference,
    None where `resolve` raises (unknown, deleted, an alias of a deleted version)."""
    register(session)
    register(session, artifact_path="jobs/abc/export")
    register(session)
    registry.set_alias(session, "digits", "best", 2)
    registry.set_alias(session, "digits", "old", 3)
    registry.delete_version(session, "digits", 3)
    session.commit()
    connection = session.connection()
    for ref in ("1", "v2", " V2 ", "latest", "best"):
        row = registry.resolve(session, "digits", ref)
        found = registry.find_live(connection, "digits", ref)
        assert found == registry.LiveRow(row.id, "digits", row.version, row.artifact_path), ref
    assert registry.find_live(connection, "digits", "latest").version == 2  # type: ignore[union-attr]
    for name, ref in (("digits", "3"), ("digits", "old"), ("digits", "9"), ("other", "latest")):
        assert registry.find_live(connection, name, ref) is None, (name, ref)
        with pytest.raises(RecordNotFoundError):
            registry.resolve(session, name, ref)


def test_the_live_reader_sees_every_commit_and_survives_a_lost_connection(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """One kept connection, yet no stale read: each read ends its transaction."""
    reader = registry.LiveReader(engine)
    try:
        assert reader.find("digits", "latest") is None
        with sessions() as session:
            register(session)
            session.commit()
        assert reader.find("digits", "latest").version == 1  # type: ignore[union-attr]
        with sessions() as session:  # another writer (the worker, another replica)
            register(session)
            registry.set_alias(session, "digits", "best", 1)
            session.commit()
        assert reader.find("digits", "latest").version == 2  # type: ignore[union-attr]
        assert reader.find("digits", "best").version == 1  # type: ignore[union-attr]
        with sessions() as session:
            registry.set_alias(session, "digits", "best", 2)
            session.commit()
        assert reader.find("digits", "best").version == 2  # type: ignore[union-attr]
        kept = reader._connection
        assert kept is not None
        kept.connection.dbapi_connection.close()  # type: ignore[union-attr]  # lost (a restart)
        assert reader.find("digits", "1").version == 1  # type: ignore[union-attr]
        assert reader._connection is not None and reader._connection is not kept
    finally:
        reader.close()
    assert reader._connection is None


def test_version_numbers_and_pinned_refs() -> None:
    assert [registry.version_number(r) for r in ("3", "v3", " V12 ", "latest", "best")] == [
        3, 3, 12, None, None,
    ]  # fmt: skip
    assert registry.is_pinned("v7") and not registry.is_pinned("latest")
    assert not registry.is_pinned("1234567890")  # beyond a version number: an alias name


def test_list_and_get_models(session: Session) -> None:
    assert registry.list_models(session) == []
    register(session, now=T0)
    register(session, now=T0 + timedelta(hours=1))
    register(session, "faces", now=T0 + timedelta(hours=2))
    registry.set_alias(session, "digits", "production", 1, now=T0 + timedelta(hours=3))
    session.commit()

    summaries = registry.list_models(session)
    assert [m.name for m in summaries] == ["digits", "faces"]
    digits = summaries[0]
    assert (digits.versions, digits.latest_version) == (2, 2)
    assert digits.aliases == {"latest": 2, "production": 1}
    assert digits.created_at == T0 and digits.updated_at == T0 + timedelta(hours=3)
    assert summaries[1].aliases == {"latest": 1}

    model = registry.get_model(session, "digits")
    assert [v.version for v in model.versions] == [1, 2] and model.latest_version == 2
    assert model.created_at == T0

    for version in (1, 2):
        registry.delete_version(session, "digits", version)
    session.commit()
    assert [m.name for m in registry.list_models(session)] == ["faces"]
    with pytest.raises(RecordNotFoundError, match="model 'digits' not found"):
        registry.get_model(session, "digits")


def test_register_validates_name(session: Session) -> None:
    with pytest.raises(InvalidValueError, match="invalid model name"):
        registry.register_version(session, "../evil", None, 1, None, DESCRIPTION)


def test_register_without_job(session: Session) -> None:
    version = registry.register_version(session, "imported", None, 5, "models/x", DESCRIPTION)
    session.commit()
    assert (version.version, version.job_id, version.metrics) == (1, None, {})


def test_the_live_reader_skips_the_query_until_sqlite_counts_a_commit(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """On a SQLite file, answers stand until any connection commits; PostgreSQL reads each time."""
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    with sessions() as session:
        register(session)
        registry.set_alias(session, "digits", "best", 1)
        session.commit()
    reader = registry.LiveReader(engine)
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert reader.find("digits", "best").version == 1  # type: ignore[union-attr]
        sqlite = engine.url.get_backend_name() == "sqlite"
        assert len(statements) == (1 if sqlite else 5)
        with sessions() as session:  # another writer moves the alias
            register(session)
            registry.set_alias(session, "digits", "best", 2)
            session.commit()
        before = len(statements)
        assert reader.find("digits", "best").version == 2  # type: ignore[union-attr]
        assert reader.find("digits", "latest").version == 2  # type: ignore[union-attr]
        assert reader.find("digits", "best").version == 2  # type: ignore[union-attr]
        reads = [s for s in statements[before:] if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == (2 if sqlite else 3)
        with sessions() as session:  # a commit that changes nothing these refs name
            registry.set_alias(session, "digits", "other", 1)
            session.commit()
        before = len(statements)
        assert reader.find("digits", "best").version == 2  # type: ignore[union-attr]
        assert len(statements) - before == 1  # read again: the counter moved
    finally:
        event.remove(engine, "before_cursor_execute", count)
        reader.close()


def test_the_live_readers_answers_stay_bounded_whatever_refs_requests_spell(
    engine: Engine, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with sessions() as session:
        register(session)
    monkeypatch.setattr(registry, "MAX_KEPT_ANSWERS", 8)
    reader = registry.LiveReader(engine)
    try:
        for spaces in range(1, 30):  # " v1", "  v1", ...: one version, ever new keys
            assert reader.find("digits", " " * spaces + "v1").version == 1  # type: ignore[union-attr]
            assert len(reader._answers) <= 8
    finally:
        reader.close()
