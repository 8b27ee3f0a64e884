"""A database outage is answered as one: 503 + Retry-After naming the database, never a 500.

The outage: the API's store is swapped for one whose engine points at a PostgreSQL port
where nothing listens (what the driver sees when the server is down), after startup.
/metrics keeps answering (operators need it most then) and /readyz names the database
without revealing its host or the driver's error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.settings import Settings
from ganserve.store import make_engine, make_session_factory
from ganserve.store.registry import LiveReader
from tests.helpers.processes import free_port
from tests.service.trained_model import app_store, register_model

JOB = "0" * 32


@pytest.fixture
def down(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        context = client.app.state.context  # type: ignore[attr-defined]
        register_model(app_store(client), "pinned")
        pinned = client.get("/v1/models/pinned/samples.png", params={"version": "1", "seed": 4})
        assert pinned.status_code == 200
        client.pinned_png = pinned.content  # type: ignore[attr-defined]
        port = free_port()
        engine = make_engine(
            f"postgresql+psycopg://ganserve:secret@127.0.0.1:{port}/ganserve",
            connect_args={"connect_timeout": 2},
        )
        healthy = context.store
        broken = dataclasses.replace(healthy, engine=engine, sessions=make_session_factory(engine))
        context.store = broken
        context.generators.store = broken
        live = context.generators._live
        context.generators._live = LiveReader(engine)
        try:
            yield client
        finally:
            context.store = context.generators.store = healthy
            context.generators._live = live
            engine.dispose()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs"),
        ("GET", f"/v1/jobs/{JOB}"),
        ("GET", f"/v1/jobs/{JOB}/history"),
        ("POST", f"/v1/jobs/{JOB}/cancel"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/digits"),
        ("GET", "/v1/models/digits/samples.png"),
    ],
)
def test_routes_answer_503_naming_the_database(down: TestClient, method: str, path: str) -> None:
    response = down.request(method, path)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["dependency"] == "database" and "database" in problem["detail"]
    assert "127.0.0.1" not in response.text and "psycopg" not in response.text.lower()


def test_submit_answers_503_during_an_outage(down: TestClient) -> None:
    spec = {"name": "outage", "dataset": "digits", "steps": 1}
    response = down.post("/v1/jobs", json=spec)
    assert response.status_code == 503, response.text
    assert response.json()["dependency"] == "database"


def test_metrics_keep_answering_during_an_outage(down: TestClient) -> None:
    response = down.get("/metrics")
    assert response.status_code == 200
    assert "ganserve_database_up 0" in response.text


def test_readyz_names_the_database_but_not_its_host(down: TestClient) -> None:
    response = down.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
    assert "127.0.0.1" not in response.text and "connection" not in response.text.lower()


def test_a_loaded_generator_serves_its_pinned_version_during_an_outage(down: TestClient) -> None:
    params = {"version": "1", "seed": 4}
    response = down.get("/v1/models/pinned/samples.png", params=params)
    assert response.status_code == 200, response.text
    assert response.content == down.pinned_png  # type: ignore[attr-defined]
    # An alias (or latest) must be read from the registry: that waits for the database.
    assert down.get("/v1/models/pinned/samples.png", params={"seed": 4}).status_code == 503
