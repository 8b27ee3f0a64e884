"""A work budget on every sampling route: truncation's redraws cannot cost minutes of CPU."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.settings import Settings
from tests.service.trained_model import app_store, register_model

BUDGET_S = 0.5


@pytest.fixture
def budgeted(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"max_sample_work_s": BUDGET_S}))) as c:
        register_model(app_store(c), "digits")
        yield c


def test_a_bulk_request_over_the_budget_is_413_before_any_work(budgeted: TestClient) -> None:
    began = time.monotonic()
    response = budgeted.post(
        "/v1/models/digits/samples", json={"n": 400, "truncation": 0.05, "format": "npz"}
    )
    assert response.status_code == 413, response.text
    assert time.monotonic() - began < 0.5  # refused from the estimate, not after the work
    problem = response.json()
    assert problem["field"] == "truncation" and problem["limit"] == BUDGET_S


def test_samples_png_over_the_budget_is_413(budgeted: TestClient) -> None:
    response = budgeted.get("/v1/models/digits/samples.png", params={"n": 200, "truncation": 0.05})
    assert response.status_code == 413 and response.json()["field"] == "truncation"


def test_requests_within_the_budget_are_served(budgeted: TestClient) -> None:
    response = budgeted.get("/v1/models/digits/samples.png", params={"n": 4, "truncation": 0.05})
    assert response.status_code == 200
    bulk = budgeted.post("/v1/models/digits/samples", json={"n": 400, "format": "npz"})
    assert bulk.status_code == 200  # no truncation: one draw per entry, cheap
