"""`ganserve worker`: every worker process gets a Celery node name of its own by default."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ganserve.cli import server
from ganserve.cli.main import app
from ganserve.settings import Settings
from ganserve.worker.app import app as celery_app

NAME = re.compile(r"ganserve-(\d+)-([0-9a-f]{6})@%h")


def test_default_name_is_unique_per_call_and_names_the_process() -> None:
    names = {server.default_worker_name() for _ in range(50)}
    assert len(names) == 50
    for name in names:
        match = NAME.fullmatch(name)
        assert match, name
        assert int(match[1]) > 0


def _worker_argv(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    """The argv `ganserve worker ARGS` hands to Celery (Celery itself is not started)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(celery_app, "worker_main", lambda argv: calls.append(list(argv)))
    monkeypatch.setattr(server, "configure_logging", lambda *_: None)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(server, "get_settings", Settings)  # not the cached, import-time one
    result = CliRunner().invoke(app, ["worker", *args])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    return calls[0]


def _hostname(argv: list[str]) -> str:
    assert argv.count("--hostname") == 1
    return argv[argv.index("--hostname") + 1]


def test_worker_gets_a_unique_node_name_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two workers started alike (as replicas on one host network are) get different names.
    first = _hostname(_worker_argv(monkeypatch))
    second = _hostname(_worker_argv(monkeypatch))
    assert NAME.fullmatch(first) and NAME.fullmatch(second)
    assert first != second


def test_worker_name_option_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _hostname(_worker_argv(monkeypatch, "--name", "gpu1@node2")) == "gpu1@node2"
