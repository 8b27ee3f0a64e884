"""Text values before SQL: one rule set per kind, a NUL byte never reaches the driver."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from ganserve.store import jobs, metrics, registry
from ganserve.store.errors import InvalidValueError
from ganserve.store.names import validate_series, validate_version_ref


def test_a_nul_byte_in_any_query_is_invalid_input_on_every_backend(session: Session) -> None:
    # PostgreSQL's driver raises DataError for NUL in text; SQLite stores it. Both refuse now.
    with pytest.raises(InvalidValueError) as caught:
        registry.get_model(session, "a\x00b")
    assert "NUL" in str(caught.value)
    job = jobs.create_job(session, "nul-job", {"dataset": "digits"}, total_steps=5)
    with pytest.raises(InvalidValueError):
        metrics.history(session, job.id, names=["loss\x00d"])


@pytest.mark.parametrize("value", ["", "a\x00b", "x" * 65, "loss d", "Loss"])
def test_series_names_follow_one_rule(value: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        validate_series(value)
    assert caught.value.field == "series"


@pytest.mark.parametrize("value", ["1", "latest", "best", "prod-2"])
def test_version_references_accepted(value: str) -> None:
    assert validate_version_ref(value) == value


@pytest.mark.parametrize("value", ["", "0", "a\x00b", "v" * 40, "-1", "2147483648"])
def test_version_references_refused(value: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        validate_version_ref(value)
    assert caught.value.field == "version"


def test_a_long_value_is_not_echoed_whole() -> None:
    with pytest.raises(InvalidValueError) as caught:
        validate_version_ref("v" * 50_000)
    assert len(str(caught.value)) < 300


def test_history_keeps_one_point_per_series_and_step(session: Session) -> None:
    # A resumed attempt reports steps the lost one already reported: the newer value wins.
    job = jobs.create_job(session, "resume-job", {"dataset": "digits"}, total_steps=300)
    metrics.append_metrics(session, job.id, 200, {"loss_d": 0.5})
    metrics.append_metrics(session, job.id, 210, {"loss_d": 0.4})
    metrics.append_metrics(session, job.id, 210, {"loss_d": 0.3, "loss_g": 1.0})
    assert metrics.history(session, job.id) == {
        "loss_d": [(200, 0.5), (210, 0.3)],
        "loss_g": [(210, 1.0)],
    }
