"""Metric history."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ganserve.store import jobs, metrics
from ganserve.store.errors import RecordNotFoundError
from ganserve.store.tables import MetricPoint


def test_history_is_sorted_by_step_per_series(session: Session) -> None:
    job = jobs.create_job(session, "digits", {}, total_steps=100)
    session.commit()
    # Written out of order, as a resumed attempt may do.
    metrics.append_metrics(session, job.id, 20, {"loss_d": 0.5, "loss_g": 1.5})
    metrics.append_metrics(session, job.id, 10, {"loss_d": 0.7, "loss_g": 1.1})
    stored = metrics.append_metrics(
        session,
        job.id,
        20,
        {"fd": 30.0, "kid": float("nan")},
        extra={"extractor": "digits-cnn-v1", "samples": 1000},
    )
    metrics.append_metrics(session, job.id, 30, {"loss_d": 0.4})
    session.commit()
    assert stored == 1  # NaN is not stored

    assert metrics.history(session, job.id) == {
        "loss_d": [(10, 0.7), (20, 0.5), (30, 0.4)],
        "loss_g": [(10, 1.1), (20, 1.5)],
        "fd": [(20, 30.0)],
    }
    assert metrics.history(session, job.id, names=["fd"]) == {"fd": [(20, 30.0)]}
    assert metrics.history(session, job.id, after_step=20) == {"loss_d": [(30, 0.4)]}
    extra = session.scalar(select(MetricPoint.extra).where(MetricPoint.name == "fd"))
    assert extra == {"extractor": "digits-cnn-v1", "samples": 1000}


def test_history_of_a_job_without_points_and_of_a_missing_job(session: Session) -> None:
    job = jobs.create_job(session, "digits", {}, total_steps=100)
    session.commit()
    assert metrics.history(session, job.id) == {}
    with pytest.raises(RecordNotFoundError):
        metrics.history(session, "0" * 32)
    with pytest.raises(RecordNotFoundError):
        metrics.append_metrics(session, "0" * 32, 1, {"x": 1.0})
