"""`ganserve up` on an empty data dir: broker, API and worker come up; Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import wait_for, wait_for_status
from tests.helpers.processes import ManagedProcess, free_port

pytestmark = pytest.mark.e2e


def _descendants(pid: int) -> set[int]:
    """Every live process below pid, from /proc (children may run in their own sessions)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may contain spaces, so split after ')'
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_up_serves_a_newcomer_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["GANSERVE_PROGRESS_INTERVAL_S"] = "0.2"
    argv = [sys.executable, "-m", "ganserve", "up", "--port", str(port),
            "--data-dir", str(tmp_path / "data")]  # fmt: skip
    with ManagedProcess(argv, log_path=tmp_path / "up.log", env=env, inherit_env=False) as up:
        up.wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout=120)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            job = client.post("/v1/jobs", json={"steps": 30, "batch_size": 32, "name": "first"})
            assert job.status_code == 202, job.text
            wait_for_status(client, job.json()["id"], {"succeeded"}, 120)
            png = client.get("/v1/models/first/samples.png", params={"seed": 1, "n": 4})
            assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

        children = _descendants(up.pid)
        assert len(children) >= 3  # broker, API, worker (and the worker's own children)
        assert (tmp_path / "data" / "ganserve.db").exists()

        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert up.wait(timeout=60) == 0, up.log_tail()
        wait_for(lambda: not any(_alive(pid) for pid in children), 10, "children to exit")
    assert "ganserve stopped" in up.log_text()
    time.sleep(0.2)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
