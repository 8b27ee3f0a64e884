"""The end-to-end helpers themselves: uvicorn, a Celery worker and a Redis for the tests."""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery

from ganserve.runtime.errors import RuntimeStartError
from tests.helpers.processes import (
    TEST_REDIS_URL_ENV,
    free_port,
    redis_url_for_tests,
    start_celery_worker,
    start_uvicorn,
)

APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    def create_app() -> FastAPI:
        app = FastAPI()

        @app.get("/healthz")
        def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/ready")
        def ready() -> dict[str, str]:
            return {"status": "ready"}

        return app

    app = create_app()
    """
)

TASKS = textwrap.dedent(
    """
    import os
    from celery import Celery

    app = Celery("helpertest", broker=os.environ["BROKER"], backend=os.environ["BROKER"])
    app.conf.task_default_queue = os.environ["QUEUE"]

    @app.task(name="helpertest.add")
    def add(x: int, y: int) -> int:
        return x + y
    """
)


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("app_path", "factory", "ready_path"),
    [("helperapp:app", False, "/healthz"), ("helperapp:create_app", True, "/ready")],
)
def test_start_uvicorn(tmp_path: Path, app_path: str, factory: bool, ready_path: str) -> None:
    (tmp_path / "helperapp.py").write_text(APP)
    port = free_port()
    log = tmp_path / "uvicorn.log"
    with start_uvicorn(
        app_path, port, {}, log, factory=factory, ready_path=ready_path, cwd=tmp_path
    ) as server:
        pid = server.pid
        assert server.alive
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False)
        assert response.json() == {"status": "ok"}
    assert_gone(pid)


@pytest.mark.e2e
def test_start_uvicorn_reports_a_broken_app(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ImportError('no such thing')\n")
    with pytest.raises(RuntimeStartError, match="no such thing"):
        start_uvicorn("broken:app", free_port(), {}, tmp_path / "uvicorn.log", cwd=tmp_path)


@pytest.mark.e2e
def test_start_celery_worker_runs_a_task(tmp_path: Path) -> None:
    (tmp_path / "helpertasks.py").write_text(TASKS)
    queue = f"helpertest-{uuid.uuid4().hex}"  # private, in case the Redis is shared
    with redis_url_for_tests(tmp_path / "redis") as url:
        env = {"BROKER": url, "QUEUE": queue}
        log = tmp_path / "worker.log"
        with start_celery_worker("helpertasks", env, log, f"helper-{queue}", cwd=tmp_path) as w:
            pid = w.pid
            client = Celery("client", broker=url, backend=url)
            result = client.send_task("helpertest.add", args=(2, 3), queue=queue)
            assert result.get(timeout=30) == 5
            result.forget()
            client.close()
        assert_gone(pid)
        with redis.Redis.from_url(url) as r:  # leave a shared Redis as we found it
            r.delete(*(key for key in r.scan_iter(f"_kombu.binding*{queue}")), queue)


def test_redis_url_for_tests_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_REDIS_URL_ENV, "redis://127.0.0.1:1/0")
    with redis_url_for_tests(tmp_path / "redis") as url:
        assert url == "redis://127.0.0.1:1/0"
    assert not (tmp_path / "redis").exists()


def test_redis_url_for_tests_starts_a_private_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TEST_REDIS_URL_ENV, raising=False)
    with redis_url_for_tests(tmp_path / "redis") as url:
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        pid = client.info("server")["process_id"]
        client.close()
    assert_gone(pid)
