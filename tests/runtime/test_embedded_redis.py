"""The embedded broker: a real valkey-server on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ganserve.runtime.embedded_redis import EmbeddedRedis, valkey_server_binary
from ganserve.runtime.errors import ProcessError, RuntimeStartError


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def client_for(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


def test_binary_is_found() -> None:
    binary = valkey_server_binary()
    assert binary.name == "valkey-server"
    assert os.access(binary, os.X_OK)


def test_starts_on_a_free_port_and_answers(server: EmbeddedRedis) -> None:
    assert server.port > 0
    assert server.url == f"redis://:{server.password}@127.0.0.1:{server.port}/0"
    assert server.running
    client = client_for(server)
    assert client.ping() is True
    client.set("greeting", "hello")
    assert client.get("greeting") == "hello"
    assert client.info("server")["process_id"] == server.pid
    client.close()


def test_is_bound_to_loopback_only(server: EmbeddedRedis) -> None:
    config = server.config_path.read_text()
    assert "bind 127.0.0.1\n" in config and "protected-mode yes\n" in config


def test_a_client_without_the_password_is_refused(server: EmbeddedRedis) -> None:
    # Any local process can reach the port; only the API and the worker get the password.
    anonymous = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=server.port, password="guess").ping()
    anonymous.close()
    assert len(server.password) >= 32
    assert EmbeddedRedis(server.data_dir).password != server.password  # one per server


@pytest.mark.parametrize(
    "command",
    [("CONFIG", "SET", "dir", "/tmp"), ("SAVE",), ("BGSAVE",), ("DEBUG", "SLEEP", "0"),
     ("MODULE", "LIST"), ("SHUTDOWN",), ("REPLICAOF", "127.0.0.1", "1"), ("ACL", "LIST"),
     ("FLUSHALL",), ("BGREWRITEAOF",), ("MIGRATE", "127.0.0.1", "1", "k", "0", "1")],
)  # fmt: skip
def test_administrative_commands_are_disabled(server: EmbeddedRedis, command: tuple) -> None:
    client = client_for(server)
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command(*command)
    client.close()


def test_its_files_are_private_to_the_owner(server: EmbeddedRedis) -> None:
    assert server.data_dir.stat().st_mode & 0o777 == 0o700
    assert server.config_path.stat().st_mode & 0o777 == 0o600
    assert server.password not in " ".join(server.argv)  # not visible in `ps`


def test_persistent_server_keeps_data_across_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=True) as server:
        client = client_for(server)
        assert "appendonly yes\nappendfsync everysec\n" in server.config_path.read_text()
        client.rpush("queue", "job-1", "job-2")
        client.close()
        old_pid, port = server.pid, server.port

        server.restart()

        assert server.pid != old_pid
        assert server.port == port
        assert_gone(old_pid)
        client = client_for(server)
        assert client.lrange("queue", 0, -1) == ["job-1", "job-2"]
        client.close()


def test_persistent_server_keeps_data_across_a_crash(tmp_path: Path) -> None:
    # Each write reaches the AOF file (the OS) before the reply, so SIGKILL loses nothing.
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = client_for(server)
        client.set("job", "queued")
        client.close()
        old_pid = server.pid
        server.kill()
        assert_gone(old_pid)
        server.start()
        client = client_for(server)
        assert client.get("job") == "queued"
        client.close()


def test_non_persistent_server_loses_data_on_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as server:
        client = client_for(server)
        assert "appendonly no\n" in server.config_path.read_text()
        client.set("key", "value")
        client.close()

        server.restart()

        client = client_for(server)
        assert client.get("key") is None
        client.close()


def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    pid = server.pid
    server.stop()
    assert_gone(pid)
    assert not server.running
    server.stop()  # a second stop is a no-op
    with pytest.raises(ProcessError):
        _ = server.pid


def test_context_manager_stops_on_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError), EmbeddedRedis(tmp_path / "redis") as server:
        pid = server.pid
        raise KeyError("boom")
    assert_gone(pid)


def test_taken_port_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedRedis(tmp_path / "redis", port=port)
        with pytest.raises(RuntimeStartError, match="Address already in use"):
            server.start()
        assert not server.running


def test_url_needs_a_port(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="start"):
        _ = EmbeddedRedis(tmp_path).url
    with pytest.raises(ValueError, match="port"):
        EmbeddedRedis(tmp_path, port=70000)


def test_the_password_never_reaches_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="ganserve")
    with EmbeddedRedis(tmp_path / "redis") as server:
        assert client_for(server).ping()
    assert f"ready on 127.0.0.1:{server.port}" in caplog.text
    assert server.password not in caplog.text
