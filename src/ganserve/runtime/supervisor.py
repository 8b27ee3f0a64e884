"""Run named child processes and stop them in a chosen order.

`ganserve up` starts the API and a worker as children of one supervisor. Each child runs in
its own process group (its own session), so Ctrl-C in the terminal reaches the supervisor
only; the supervisor then stops the children in reverse start order: SIGTERM to the child's
group, a grace period, then SIGKILL to the group. A child that exits on its own stops the
others, and `run()` returns a non-zero exit code.

Typical use::

    with Supervisor() as sup:
        api = sup.add("api", [sys.executable, "-m", "uvicorn", ...], env={"REDIS_URL": url})
        wait_for_http("http://127.0.0.1:8000/healthz", timeout=30, process=api)
        sup.add("worker", [sys.executable, "-m", "celery", ...])
        exit_code = sup.run()

POSIX only (process groups, signals).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import httpx

from ganserve.runtime.errors import RuntimeStartError

logger = logging.getLogger(__name__)

_HAS_WAITID = hasattr(os, "waitid")


# --- small helpers --------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment for a child: the current one with `env` set on top."""
    merged = dict(os.environ)
    if env:
        merged.update(env)
    return merged


def leader_exited(process: subprocess.Popen[Any]) -> bool:
    """Whether `process` has exited, without reaping it where the platform allows.

    An exited but unreaped child stays a zombie, so its PID (and process-group id) cannot be
    reused by another process: signalling its group afterwards is still safe.
    """
    if process.returncode is not None:
        return True
    if not _HAS_WAITID:
        return process.poll() is not None
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped elsewhere
        process.poll()
        return True
    return info is not None


def signal_group(process: subprocess.Popen[Any], sig: int) -> None:
    """Send `sig` to the process group led by `process` (started with start_new_session=True).

    Does nothing once `process` has been reaped: its group id may belong to someone else then.
    """
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        logger.warning("not allowed to signal process group %d", process.pid)


def stop_process_group(
    process: subprocess.Popen[Any],
    timeout: float,
    *,
    name: str = "",
    force: threading.Event | None = None,
) -> int:
    """SIGTERM the group of `process`, wait up to `timeout` s, SIGKILL the group, reap; the code.

    Members of the group still alive once the leader is gone (orphaned grandchildren) get
    SIGKILL too, so nothing started under the child outlives it. Setting `force` cuts the
    grace period short.
    """
    label = name or str(process.pid)
    asked = not leader_exited(process)
    if asked:
        logger.debug("stopping %s (pid %d): SIGTERM to its process group", label, process.pid)
        signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not leader_exited(process):
            if time.monotonic() >= deadline or (force is not None and force.is_set()):
                logger.warning("%s (pid %d) still running: SIGKILL", label, process.pid)
                break
            time.sleep(0.05)
    signal_group(process, signal.SIGKILL)
    code = process.wait()
    if asked and code in (0, -signal.SIGTERM):  # it did what it was asked: not an error
        logger.info("%s stopped", label)
    else:
        logger.info("%s (pid %d) exited with code %d", label, process.pid, code)
    return code


def _raise_if_exited(process: subprocess.Popen[Any] | None, what: str) -> None:
    if process is not None and process.poll() is not None:
        raise RuntimeStartError(
            f"process {process.pid} exited with code {process.returncode} while waiting for {what}"
        )


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 30.0,
    *,
    process: subprocess.Popen[Any] | None = None,
    interval: float = 0.1,
) -> None:
    """Block until a TCP connection to host:port succeeds; RuntimeStartError after `timeout` s.

    With `process`, fail at once if that process exits while we wait.
    """
    what = f"{host}:{port} to accept connections"
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while True:
        _raise_if_exited(process, what)
        try:
            with socket.create_connection((host, port), timeout=min(1.0, timeout)):
                return
        except OSError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise RuntimeStartError(f"timed out after {timeout:g} s waiting for {what}: {last}")
        time.sleep(interval)


def wait_for_http(
    url: str,
    timeout: float = 30.0,
    *,
    process: subprocess.Popen[Any] | None = None,
    interval: float = 0.1,
) -> None:
    """Block until GET `url` answers 2xx; RuntimeStartError after `timeout` s.

    Proxy settings from the environment are ignored (the target is a local server). With
    `process`, fail at once if that process exits while we wait.
    """
    what = f"GET {url} to answer 2xx"
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(trust_env=False, timeout=min(2.0, timeout)) as client:
        while True:
            _raise_if_exited(process, what)
            try:
                response = client.get(url)
                if response.is_success:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise RuntimeStartError(f"timed out after {timeout:g} s waiting for {what}: {last}")
            time.sleep(interval)


# --- the supervisor -------------------------------------------------------------------------


@dataclass
class Child:
    """A process the supervisor started."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Starts named children, waits for a signal or a child's exit, stops them in reverse order."""

    def __init__(self, *, poll_interval: float = 0.2) -> None:
        self.poll_interval = poll_interval  # seconds between checks on the children
        self._children: list[Child] = []
        self._stop_requested = threading.Event()
        self._force = threading.Event()
        self._stopped = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    @property
    def children(self) -> list[Child]:
        """The children in start order."""
        return list(self._children)

    def add(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        log_path: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` now as child `name`, in its own process group; return its Popen.

        `env` is set on top of the current environment (None: inherit it unchanged).
        `log_path`: append the child's stdout and stderr there instead of the terminal.
        """
        if any(child.name == name for child in self._children):
            raise ValueError(f"a child named {name!r} already exists")
        if self._stopped:
            raise RuntimeStartError(f"cannot start {name!r}: the supervisor has stopped")
        args = list(argv)
        log = open(log_path, "ab") if log_path is not None else None
        try:
            process = subprocess.Popen(
                args,
                env=child_env(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise RuntimeStartError(f"could not start {name!r} ({args[0]}): {exc}") from exc
        finally:
            if log is not None:
                log.close()
        self._children.append(Child(name=name, argv=args, process=process))
        logger.info("started %s (pid %d)", name, process.pid)
        logger.debug("%s runs: %s", name, " ".join(args))
        return process

    def request_stop(self) -> None:
        """Ask `wait()` to return; a second request cuts the grace period of `stop_all()` short."""
        if self._stop_requested.is_set():
            self._force.set()
        self._stop_requested.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stop_requested.is_set():
            logger.warning("received %s again: killing the children now", name)
        else:
            logger.info("received %s: stopping (again to kill at once)", name)
        self.request_stop()

    def wait(self) -> Child | None:
        """Block until a child exits (returned, not yet reaped) or a stop is requested (None)."""
        while not self._stop_requested.is_set():
            for child in self._children:
                if leader_exited(child.process):
                    logger.error("%s (pid %d) exited unexpectedly", child.name, child.pid)
                    return child
            self._stop_requested.wait(self.poll_interval)
        return None

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every child in reverse start order; `timeout` is each child's grace period (s).

        Safe to call more than once.
        """
        self._stopped = True
        for child in reversed(self._children):
            if child.process.returncode is None:
                stop_process_group(child.process, timeout, name=child.name, force=self._force)

    def run(self, timeout: float = 10.0) -> int:
        """Handle SIGINT/SIGTERM/SIGHUP, wait, stop all children, and return an exit code.

        0 after a signal; if a child exited on its own, its exit code (128 + N when it died of
        signal N, 1 when it exited with 0). Call from the main thread.
        """
        # SIGHUP too: a closed terminal must not leave the children behind
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            names = ", ".join(f"{c.name} (pid {c.pid})" for c in self._children)
            logger.info("supervising %s; Ctrl-C stops them", names or "no children")
            exited = self.wait()
            self.stop_all(timeout)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if exited is None:
            return 0
        return exit_code_of(exited.process.wait())


def exit_code_of(returncode: int) -> int:
    """The supervisor's exit code for a child that exited on its own with `returncode`."""
    if returncode < 0:
        return 128 - returncode
    return returncode or 1
