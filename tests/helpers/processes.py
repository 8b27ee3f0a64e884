"""Real processes for end-to-end tests: a Redis, uvicorn servers and Celery workers.

Every process runs in its own process group with its output in a log file; stopping one
signals exactly the process (group) it started, and a failure to start raises with the last
lines of its log. Generic: nothing here knows ganserve's services beyond default paths.

A session-wide Redis, in a conftest::

    @pytest.fixture(scope="session")
    def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        with redis_url_for_tests(tmp_path_factory.mktemp("redis")) as url:
            yield url
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from ganserve.runtime.embedded_redis import EmbeddedRedis
from ganserve.runtime.errors import RuntimeStartError
from ganserve.runtime.supervisor import free_port as _free_port
from ganserve.runtime.supervisor import leader_exited, stop_process_group, wait_for_http

logger = logging.getLogger(__name__)

TEST_REDIS_URL_ENV = "GANSERVE_TEST_REDIS_URL"  # set by CI to the machine's Redis


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    return _free_port("127.0.0.1")


class ManagedProcess:
    """A subprocess with its output in `log_path`; a context manager that stops it on exit."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        inherit_env: bool = True,
        new_session: bool = True,
        name: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(env or {})  # set on top of os.environ when inherit_env, else the whole env
        self.cwd = cwd
        self.inherit_env = inherit_env
        self.new_session = new_session  # own process group: stop() signals the whole group
        self.name = name or Path(self.argv[0]).name
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return f"ManagedProcess({self.name!r}, pid={pid}, log={str(self.log_path)!r})"

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            logger.error("%s failed; last lines of %s:\n%s", self, self.log_path, self.log_tail())
        self.stop()

    # --- state -------------------------------------------------------------------------------

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        # Does not reap an exited process, so stop() can still signal its group safely.
        return self._process is not None and not leader_exited(self._process)

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as log:
                tail = deque(log, maxlen=lines)
        except FileNotFoundError:
            return "(no log)"
        return b"".join(tail).decode(errors="replace").rstrip()

    def _failure(self, message: str) -> RuntimeStartError:
        return RuntimeStartError(
            f"{self.name} (pid {self.pid}): {message}\n"
            f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    # --- control -----------------------------------------------------------------------------

    def start(self) -> Self:
        if self.alive:
            raise RuntimeError(f"{self} is already running")
        env = {**os.environ, **self.env} if self.inherit_env else dict(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        logger.info("started %s: %s", self, " ".join(self.argv))
        return self

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """Block until the log matches `pattern` (a regex); raise with the log tail otherwise."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match is not None:
                return match
            if not self.alive:
                raise self._failure(
                    f"exited with code {self.returncode} before its log matched {regex.pattern!r}"
                )
            if time.monotonic() >= deadline:
                raise self._failure(f"log did not match {regex.pattern!r} within {timeout:g} s")
            time.sleep(0.1)

    def wait_for_http(self, url: str, timeout: float = 60.0) -> None:
        """Block until GET `url` answers 2xx; raise with the log tail otherwise."""
        try:
            wait_for_http(url, timeout, process=self.process)
        except RuntimeStartError as exc:
            raise self._failure(str(exc)) from exc

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit by itself; its return code."""
        return self.process.wait(timeout)

    def send_signal(self, sig: int) -> None:
        """Send `sig` to exactly this process (not its group), e.g. SIGKILL to simulate a crash."""
        if self.alive:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout` s, SIGKILL; reap. The group too with new_session.

        Returns the exit code (None if never started). Safe to call more than once.
        """
        process = self._process
        if process is None:
            return None
        if self.new_session:
            return stop_process_group(process, timeout, name=self.name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait()


def start_uvicorn(
    app_path: str,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    *,
    factory: bool = False,
    ready_path: str = "/healthz",
    timeout: float = 60.0,
    extra_args: Sequence[str] = (),
    cwd: Path | None = None,
) -> ManagedProcess:
    """Run `python -m uvicorn app_path` on 127.0.0.1:`port`; return once GET ready_path is 2xx.

    `env` is set on top of the current environment. `factory`: app_path names a function
    that returns the app.
    """
    argv = [sys.executable, "-m", "uvicorn", app_path, "--host", "127.0.0.1", "--port", str(port)]
    if factory:
        argv.append("--factory")
    argv += list(extra_args)
    proc = ManagedProcess(argv, log_path=log_path, env=env, cwd=cwd, name=f"uvicorn:{port}")
    proc.start()
    try:
        proc.wait_for_http(f"http://127.0.0.1:{port}{ready_path}", timeout)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_celery_worker(
    app: str,
    env: Mapping[str, str],
    log_path: Path,
    hostname: str,
    *,
    timeout: float = 60.0,
    extra_args: Sequence[str] = (),
    cwd: Path | None = None,
) -> ManagedProcess:
    """Run a one-process Celery worker (`--pool solo`) for `app`; return once it logs "ready".

    `env` is set on top of the current environment. `hostname` is the worker's -n name.
    """
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "--pool", "solo", "--concurrency", "1",
        "-n", hostname,
        "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        *extra_args,
    ]  # fmt: skip
    proc = ManagedProcess(argv, log_path=log_path, env=env, cwd=cwd, name=f"celery:{hostname}")
    proc.start()
    try:
        # Celery logs "celery@<hostname> ready." (the name may have had %h expanded).
        proc.wait_for_log(r"\S+@\S+ ready\.", timeout)
    except BaseException:
        proc.stop()
        raise
    return proc


@contextlib.contextmanager
def redis_url_for_tests(data_dir: Path, *, persistent: bool = True) -> Iterator[str]:
    """A Redis URL for the tests: $GANSERVE_TEST_REDIS_URL if set, else a private EmbeddedRedis.

    The private server lives in `data_dir` and is stopped when the block exits. A shared
    server (CI's) is never flushed here: tests on it must use their own keys and queues.
    """
    url = os.environ.get(TEST_REDIS_URL_ENV)
    if url:
        yield url
        return
    with EmbeddedRedis(data_dir, persistent=persistent) as server:
        yield server.url
