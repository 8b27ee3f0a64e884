"""The supervisor behind `ganserve up`, run in a subprocess and stopped with real signals."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ganserve.runtime.errors import RuntimeStartError
from ganserve.runtime.supervisor import (
    Supervisor,
    exit_code_of,
    free_port,
    wait_for_http,
    wait_for_port,
)
from tests.helpers.processes import ManagedProcess

# A child: writes its PID to argv[1], records its name in argv[2] when it gets SIGTERM, then
# behaves as argv[3] says.
CHILD = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time

    pid_file, order_file, mode, *rest = sys.argv[1:]
    name = os.path.basename(pid_file).removesuffix(".pid")

    def write_pid(path, pid):
        with open(path + ".tmp", "w") as f:
            f.write(str(pid))
        os.replace(path + ".tmp", path)

    def on_term(signum, frame):
        with open(order_file, "a") as f:
            f.write(name + "\\n")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "grandchild":  # a process of its own, in the same process group
        subprocess.Popen([sys.executable, __file__, rest[0], order_file, "ignore-term"])
    write_pid(pid_file, os.getpid())
    if mode == "exit":
        time.sleep(float(rest[1]))
        sys.exit(int(rest[0]))
    while True:
        time.sleep(0.05)
    """
)

# The supervisor under test, driven by a JSON spec: {"children": [[name, argv]], "timeout": s}.
SUPERVISOR = textwrap.dedent(
    """
    import json, logging, sys
    from ganserve.runtime.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    spec = json.loads(sys.argv[1])
    with Supervisor(poll_interval=0.05) as sup:
        for name, argv in spec["children"]:
            sup.add(name, argv)
        code = sup.run(timeout=spec["timeout"])
    sys.exit(code)
    """
)


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie nobody reaped yet counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def read_pid(path: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return int(path.read_text())


@dataclass
class Setup:
    tmp: Path
    child_script: Path
    order_file: Path

    def child(self, name: str, mode: str = "loop", *rest: str) -> tuple[str, list[str]]:
        argv = [sys.executable, str(self.child_script), str(self.pid_file(name))]
        return name, [*argv, str(self.order_file), mode, *rest]

    def pid_file(self, name: str) -> Path:
        return self.tmp / f"{name}.pid"

    def stop_order(self) -> list[str]:
        if not self.order_file.exists():
            return []
        return self.order_file.read_text().split()

    def supervisor(self, children: list[tuple[str, list[str]]], timeout: float) -> ManagedProcess:
        script = self.tmp / "supervise.py"
        script.write_text(SUPERVISOR)
        spec = json.dumps({"children": children, "timeout": timeout})
        proc = ManagedProcess(
            [sys.executable, str(script), spec],
            log_path=self.tmp / "supervisor.log",
            name="supervisor",
        )
        proc.start()
        proc.wait_for_log("supervising", timeout=30)  # signal handlers are installed
        return proc


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    child_script = tmp_path / "child.py"
    child_script.write_text(CHILD)
    return Setup(tmp=tmp_path, child_script=child_script, order_file=tmp_path / "order.txt")


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_signal_stops_children_in_reverse_order(setup: Setup, sig: signal.Signals) -> None:
    children = [setup.child("first"), setup.child("second")]
    with setup.supervisor(children, timeout=10) as sup:
        pids = [read_pid(setup.pid_file(name)) for name, _ in children]
        assert all(pid_alive(pid) for pid in pids)

        os.kill(sup.pid, sig)

        assert sup.wait(timeout=30) == 0, sup.log_tail()
    for pid in pids:
        assert_gone(pid)
    assert setup.stop_order() == ["second", "first"]


def test_child_exit_stops_the_others_and_fails(setup: Setup) -> None:
    children = [setup.child("api"), setup.child("worker", "exit", "3", "0.5")]
    with setup.supervisor(children, timeout=10) as sup:
        pids = [read_pid(setup.pid_file(name)) for name, _ in children]
        assert sup.wait(timeout=30) == 3, sup.log_tail()
    for pid in pids:
        assert_gone(pid)
    assert setup.stop_order() == ["api"]
    assert "worker" in sup.log_text() and "exited unexpectedly" in sup.log_text()


def test_child_ignoring_sigterm_is_killed_after_the_grace_period(setup: Setup) -> None:
    children = [setup.child("stubborn", "ignore-term")]
    with setup.supervisor(children, timeout=1.0) as sup:
        pid = read_pid(setup.pid_file("stubborn"))
        started = time.monotonic()
        os.kill(sup.pid, signal.SIGINT)
        assert sup.wait(timeout=30) == 0, sup.log_tail()
        assert time.monotonic() - started >= 1.0
    assert_gone(pid)
    assert "SIGKILL" in sup.log_text()


def test_grandchildren_in_the_child_group_are_stopped(setup: Setup) -> None:
    grandchild_pid_file = setup.tmp / "grandchild.pid"
    children = [setup.child("parent", "grandchild", str(grandchild_pid_file))]
    with setup.supervisor(children, timeout=10) as sup:
        pid = read_pid(setup.pid_file("parent"))
        grandchild = read_pid(grandchild_pid_file)
        assert pid_alive(grandchild)
        os.kill(sup.pid, signal.SIGINT)
        assert sup.wait(timeout=30) == 0, sup.log_tail()
    assert_gone(pid)
    deadline = time.monotonic() + 10
    while pid_alive(grandchild):  # reparented; whoever adopted it reaps it
        assert time.monotonic() < deadline, "the grandchild survived its group's SIGKILL"
        time.sleep(0.05)


def test_in_process_stop_request_and_env(setup: Setup, tmp_path: Path) -> None:
    env_file = tmp_path / "env.txt"
    code = f"import os; open({str(env_file)!r}, 'w').write(os.environ['GANSERVE_X'])"
    with Supervisor(poll_interval=0.05) as sup:
        sup.add(
            "env",
            [sys.executable, "-c", code + "; import time; time.sleep(60)"],
            env={"GANSERVE_X": "42"},
        )
        sup.add("loop", setup.child("loop")[1])
        pids = [child.pid for child in sup.children]
        read_pid(setup.pid_file("loop"))
        with pytest.raises(ValueError, match="already exists"):
            sup.add("loop", ["true"])
        sup.request_stop()
        assert sup.run(timeout=5) == 0
        sup.stop_all()  # a second stop is a no-op
    for pid in pids:
        assert_gone(pid)
    assert env_file.read_text() == "42"


def test_missing_program_is_a_start_error() -> None:
    with Supervisor() as sup, pytest.raises(RuntimeStartError, match="no-such-program"):
        sup.add("ghost", ["/nonexistent/no-such-program"])


@pytest.mark.parametrize(
    ("returncode", "expected"), [(3, 3), (0, 1), (-signal.SIGKILL, 128 + signal.SIGKILL)]
)
def test_exit_code_of(returncode: int, expected: int) -> None:
    assert exit_code_of(returncode) == expected


def test_wait_for_http_and_port(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with ManagedProcess(argv, log_path=tmp_path / "http.log", cwd=tmp_path) as server:
        wait_for_port("127.0.0.1", port, timeout=30, process=server.process)
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=30, process=server.process)
        pid = server.pid
    assert_gone(pid)


def test_wait_for_port_times_out() -> None:
    port = free_port()
    with pytest.raises(RuntimeStartError, match="timed out"):
        wait_for_port("127.0.0.1", port, timeout=0.3)
    with pytest.raises(RuntimeStartError, match="timed out"):
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=0.3)


def test_wait_fails_fast_when_the_process_exits(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; sys.exit(7)"]
    with ManagedProcess(argv, log_path=tmp_path / "quit.log") as proc:
        started = time.monotonic()
        with pytest.raises(RuntimeStartError, match="code 7"):
            proc.wait_for_http(f"http://127.0.0.1:{free_port()}/healthz", timeout=30)
        assert time.monotonic() - started < 10
