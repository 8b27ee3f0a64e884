"""`ganserve up` on an empty data dir: broker, API and worker come up; the CLI finds it through
the GANSERVE_URL it prints; Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.conftest import wait_for
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
    """On a non-default port: `up` prints GANSERVE_URL, the CLI follows a job through it,
    the first job on a fresh data dir says it is preparing (the evaluation classifier), and
    Ctrl-C stops everything, saying so."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATABASE_URL", "GANSERVE_URL", "GANSERVE_LOG_FORMAT")
    }
    env["GANSERVE_PROGRESS_INTERVAL_S"] = "0.2"
    argv = [sys.executable, "-m", "ganserve", "up", "--port", str(port),
            "--data-dir", str(tmp_path / "data")]  # fmt: skip
    with ManagedProcess(argv, log_path=tmp_path / "up.log", env=env, inherit_env=False) as up:
        exported = up.wait_for_log(r"export GANSERVE_URL=(\S+)", timeout=120).group(1)
        assert exported == f"http://127.0.0.1:{port}"
        up.wait_for_http(f"{exported}/readyz", timeout=60)
        # piped, so the service logs JSON lines
        assert any(line.startswith("{") for line in up.log_text().splitlines())

        cli_env = {**env, "GANSERVE_URL": exported}
        submit = [sys.executable, "-m", "ganserve", "jobs", "submit", "--name", "first",
                  "--steps", "30", "--batch-size", "32", "--follow"]  # fmt: skip
        with ManagedProcess(submit, log_path=tmp_path / "submit.log", env=cli_env,
                            inherit_env=False) as follow, httpx.Client(
            base_url=exported, timeout=60
        ) as client:  # fmt: skip
            job_id = follow.wait_for_log(r"(?m)^([0-9a-f]{32})$", timeout=60).group(1)
            preparing = wait_for(
                lambda: (job := client.get(f"/v1/jobs/{job_id}").json())["phase"] == "preparing"
                and job,
                60, "the job to be preparing",
            )  # fmt: skip
            assert preparing["status"] == "running" and preparing["progress"]["step"] == 0
            assert follow.wait(timeout=600) == 0, follow.log_tail()
            assert f"job {job_id}: succeeded" in follow.log_text()
            assert "registered model first version 1" in follow.log_text()

            job = client.get(f"/v1/jobs/{job_id}").json()
            assert job["status"] == "succeeded" and job["phase"] is None
            events = client.get(f"/v1/jobs/{job_id}/events").text.replace("\r\n", "\n")
            steps = [json.loads(line.removeprefix("data: "))
                     for block in events.split("\n\n") if "event: preparing" in block
                     for line in block.splitlines() if line.startswith("data: ")]  # fmt: skip
            assert steps, events[:2000]
            assert steps[-1]["step"] == steps[-1]["total"] > 1
            assert steps[-1]["message"] == (
                f"training the evaluation classifier for digits, one-time, "
                f"step {steps[-1]['total']}/{steps[-1]['total']}"
            )
            # the preparing events come before the first training step
            assert events.index("event: preparing") < events.index("event: progress")

            png = client.get("/v1/models/first/samples.png", params={"seed": 1, "n": 4})
            assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
            grid = tmp_path / "grid.png"
            sample = subprocess.run(
                [sys.executable, "-m", "ganserve", "models", "sample", "first", "-n", "16",
                 "-o", str(grid)],
                env=cli_env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert sample.returncode == 0, sample.stderr
            assert Image.open(grid).size == (7 * 37, 7 * 37)  # readable by default

        children = _descendants(up.pid)
        assert len(children) >= 3  # broker, API, worker (and the worker's own children)
        assert (tmp_path / "data" / "ganserve.db").exists()

        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert up.wait(timeout=60) == 0, up.log_tail()
        wait_for(lambda: not any(_alive(pid) for pid in children), 10, "children to exit")
    log = up.log_text()
    assert "ganserve stopped" in log
    assert "api stopped" in log and "worker stopped" in log
    assert "exited with code -15" not in log  # a requested stop is not reported as an error
    time.sleep(0.2)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_the_cli_says_how_to_find_a_server_elsewhere() -> None:
    port = free_port()  # nothing listens there
    env = {**os.environ, "GANSERVE_URL": f"http://127.0.0.1:{port}"}
    result = subprocess.run(
        [sys.executable, "-m", "ganserve", "jobs", "list"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot reach http://127.0.0.1:{port}" in result.stderr
    assert "GANSERVE_URL" in result.stderr and "--url" in result.stderr
    assert "ganserve up" in result.stderr
