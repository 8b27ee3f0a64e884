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
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.running
    client = client_for(server)
    assert client.ping() is True
    client.set("greeting", "hello")
    assert client.get("greeting") == "hello"
    assert client.info("server")["process_id"] == server.pid
    client.close()


def test_is_bound_to_loopback_only(server: EmbeddedRedis) -> None:
    client = client_for(server)
    assert client.config_get("bind") == {"bind": "127.0.0.1"}
    assert client.config_get("protected-mode") == {"protected-mode": "yes"}
    client.close()


def test_persistent_server_keeps_data_across_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=True) as server:
        client = client_for(server)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
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
        assert client.config_get("appendonly") == {"appendonly": "no"}
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
