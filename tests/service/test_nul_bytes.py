"""A NUL byte anywhere a name, alias, version or series goes: 422, on PostgreSQL as on SQLite.

PostgreSQL's driver raises for NUL in text (a 500 before); SQLite stored or missed it (404).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.settings import Settings
from tests.helpers.databases import BACKENDS, fresh_database

JOB = "0" * 32


@pytest.fixture(params=BACKENDS)
def any_backend(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[TestClient]:
    with fresh_database(str(request.param), tmp_path) as url:
        app = create_app(settings.model_copy(update={"database_url": url}))
        with TestClient(app) as client:
            yield client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/models/a%00b", None),
        ("GET", "/v1/models/a%00b/samples.png", None),
        ("GET", "/v1/models/a%00b/versions/1", None),
        ("GET", "/v1/models/a%00b/interpolation.png?seed_a=0&seed_b=1", None),
        ("GET", "/v1/models/digits/samples.png?version=a%00b", None),
        ("POST", "/v1/models/a%00b/samples", {"n": 1}),
        ("POST", "/v1/models/digits/samples", {"n": 1, "version": "a\u0000b"}),
        ("PUT", "/v1/models/digits/aliases/a%00b", {"version": 1}),
        ("DELETE", "/v1/models/digits/aliases/a%00b", None),
        ("DELETE", "/v1/models/a%00b/versions/1", None),
        ("GET", f"/v1/jobs/{JOB}/history?series=a%00b", None),
        ("POST", "/v1/jobs", {"name": "a\u0000b"}),
    ],
)
def test_nul_is_422_on_every_backend(
    any_backend: TestClient, method: str, path: str, body: object
) -> None:
    response = any_backend.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
