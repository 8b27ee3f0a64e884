"""Operations: /healthz (alive) and /readyz (database and broker reachable)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from ganserve.service.app import create_app
from ganserve.settings import Settings
from tests.helpers.processes import free_port


def test_healthz_is_always_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_the_database_and_the_broker(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_naming_the_broker_when_redis_is_unreachable(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(down)) as client:  # the API starts without its broker
        assert client.get("/healthz").status_code == 200
        began = time.monotonic()
        response = client.get("/readyz")
        assert time.monotonic() - began < 5
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 503 and "broker" in problem["detail"]
    assert problem["failing"] == ["broker"]
    assert problem["checks"]["database"] == "ok" and problem["checks"]["broker"] != "ok"


def test_readyz_is_503_naming_the_database_when_it_fails(
    client: TestClient, tmp_path: Path
) -> None:
    context = client.app.state.context  # type: ignore[attr-defined]
    broken = create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    healthy = context.store
    context.store = dataclasses.replace(healthy, engine=broken)
    try:
        response = client.get("/readyz")
    finally:
        context.store = healthy
        broken.dispose()
    assert response.status_code == 503
    problem = response.json()
    assert "database" in problem["detail"] and problem["failing"] == ["database"]
    assert problem["checks"]["broker"] == "ok"
