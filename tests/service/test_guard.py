"""Before any route runs: NUL bytes refused, auth from headers, a body limit while streaming.

The latency test runs a real uvicorn (in a thread) and streams a large body at it while
timing /healthz: the loop never stalls on a body it is going to refuse.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.settings import Settings
from tests.helpers.processes import free_port

KEY = "guard-key"
LIMIT = 64 * 1024


@pytest.fixture
def keyed(settings: Settings) -> Iterator[TestClient]:
    guarded = settings.model_copy(update={"api_keys": [KEY], "max_body_bytes": LIMIT})
    with TestClient(create_app(guarded)) as client:
        yield client


def test_auth_is_decided_before_the_body_is_read(keyed: TestClient) -> None:
    # A malformed body would be a 400 if it were parsed first; without a key it is never read.
    json_type = {"content-type": "application/json"}
    response = keyed.post("/v1/jobs", content=b"{" * 1000, headers=json_type)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    forged = keyed.post("/v1/jobs", content=b"{", headers={"authorization": "Bearer nope"})
    assert forged.status_code == 403


def test_a_declared_body_over_the_limit_is_413_before_reading(keyed: TestClient) -> None:
    auth = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    body = b'{"name": "' + b"x" * LIMIT + b'"}'
    response = keyed.post("/v1/jobs", content=body, headers=auth)
    assert response.status_code == 413, response.text
    problem = response.json()
    assert problem["limit"] == LIMIT and problem["field"] == "body"
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_streamed_body_over_the_limit_is_413(keyed: TestClient) -> None:
    # No Content-Length: chunks are counted as they arrive.
    def chunks() -> Iterator[bytes]:
        yield b'{"seeds": ['
        for _ in range(LIMIT // 8):
            yield b"1234567,"
        yield b"0]}"

    auth = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    response = keyed.post("/v1/models/some-model/samples", content=chunks(), headers=auth)
    assert response.status_code == 413, response.text
    assert response.json()["status"] == 413


def test_bodies_within_the_limit_still_work(keyed: TestClient) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    response = keyed.post("/v1/jobs", json={"name": "ok", "dataset": "no-such"}, headers=auth)
    assert response.status_code == 422 and response.json()["field"] == "dataset"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/models/a%00b", "path"),
        ("/v1/models/a%00b/samples.png", "path"),
        ("/v1/models/digits/samples.png?version=a%00b", "version"),
        ("/v1/jobs/" + "0" * 32 + "/history?series=a%00b", "series"),
    ],
)
def test_nul_in_a_path_or_query_is_422_naming_it(client: TestClient, path: str, field: str) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            break
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_healthz_is_not_delayed_by_a_large_body(settings: Settings, tmp_path: Path) -> None:
    # 40 MB of JSON to the bulk route (no key needed), streamed without Content-Length.
    big = settings.model_copy(update={"data_dir": tmp_path / "big"})
    with running(big) as url:
        outcome: dict[str, int] = {}

        def send() -> None:
            def chunks() -> Iterator[bytes]:
                yield b'{"seeds": ['
                for _ in range(40_000):
                    yield b"12345678," * 111
                yield b"0]}"

            with contextlib.suppress(httpx.HTTPError):
                response = httpx.post(
                    f"{url}/v1/models/m/samples", content=chunks(),
                    headers={"content-type": "application/json"}, timeout=30,
                )  # fmt: skip
                outcome["status"] = response.status_code

        sender = threading.Thread(target=send)
        sender.start()
        worst = 0.0
        with httpx.Client(base_url=url, timeout=5) as probe:
            probe.get("/healthz")
            while sender.is_alive():
                began = time.perf_counter()
                assert probe.get("/healthz").status_code == 200
                worst = max(worst, time.perf_counter() - began)
        sender.join()
    assert outcome.get("status", 413) == 413
    # The defect stalled /healthz for 1.6-7.1 s while a body was parsed on the loop; under 1 s
    # tells that apart from the scheduler (one CI run saw a 458 ms outlier: server, sender and
    # probe are threads of one process sharing the GIL on 2 cores).
    assert worst < 1.0, f"/healthz took {worst * 1000:.0f} ms while a body streamed in"


def test_sampling_routes_stay_open_unless_protected(keyed: TestClient) -> None:
    # Keys guard mutating routes; sampling (translate included) is open by default.
    for path in ("/v1/models/m/samples.png", "/v1/models/m/interpolation.png?seed_a=0&seed_b=1"):
        assert keyed.get(path).status_code == 404
    assert keyed.post("/v1/models/m/translate", content=b"x").status_code not in (401, 403)
    assert keyed.post("/v1/models/m/samples", json={"n": 1}).status_code == 404
