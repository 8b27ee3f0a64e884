"""Every GanError survives pickling with its fields: render processes send them back."""

from __future__ import annotations

import pickle

import pytest

from ganserve.gan.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    DivergenceError,
    GanError,
    QualityAlarm,
)


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("label", "must be between 0 and 9, got 12"),
        DatasetError("no dataset 'faces'"),
        CheckpointError("torn file"),
        DivergenceError(12, {"d": float("inf")}),
        QualityAlarm("collapse", 500, "coverage fell to 1/10"),
    ],
)
def test_errors_round_trip_through_pickle(error: GanError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
