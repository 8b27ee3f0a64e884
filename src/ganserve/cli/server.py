"""`ganserve api`, `ganserve worker` and `ganserve up`: the server processes."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ganserve.logs import configure_logging
from ganserve.runtime.embedded_redis import EmbeddedRedis
from ganserve.runtime.errors import ProcessError
from ganserve.runtime.supervisor import Supervisor, wait_for_http
from ganserve.settings import Settings, get_settings

console = Console(stderr=True, soft_wrap=True)  # never broken mid-phrase when piped

HostOption = Annotated[str | None, typer.Option(help="Bind address (default GANSERVE_HOST).")]
PortOption = Annotated[int | None, typer.Option(help="Port (default GANSERVE_PORT).")]


def api_command(host: HostOption = None, port: PortOption = None) -> None:
    """Run the HTTP API (uvicorn) against the configured database and Redis."""
    import gc

    import uvicorn

    import ganserve.service.app  # noqa: F401  (torch, FastAPI, ...: imported before the freeze)

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Everything imported so far lives as long as the process: out of the garbage collector's
    # full passes, which otherwise stall all requests for up to ~180 ms each (bench/README).
    gc.collect()
    gc.freeze()
    uvicorn.run(
        "ganserve.service.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        loop=_fastest("uvloop", "asyncio"),
        http=_fastest("httptools", "h11"),
        log_level=settings.log_level.lower(),
        log_config=None,  # keep the handlers configure_logging installed (JSON lines)
        access_log=settings.access_log,  # off by default: a JSON line per request (bench/README)
    )


def _fastest(module: str, fallback: str) -> str:
    """uvicorn's `module` implementation where it is installed, else `fallback`, said aloud.

    Chosen by measurement (bench/README.md): uvloop + httptools, one process. Named rather
    than "auto" so that a fallback is never silent: asyncio, for one, leaves accepted sockets
    without TCP_NODELAY under --workers (uvicorn#3149, +47 ms per keep-alive request here).
    """
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return module
    console.print(f"[yellow]warning:[/yellow] {module} is not installed; uvicorn uses {fallback}")
    return fallback


def worker_command(
    queue: Annotated[str | None, typer.Option(help="Queue to consume.")] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Worker node name (default: ganserve-<pid>-<random>@<host>)."),
    ] = None,
) -> None:
    """Run one training worker (one process: start one per GPU)."""
    settings = get_settings()
    if not settings.redis_url:
        console.print("[red]error:[/red] REDIS_URL is not set (or use `ganserve up`)")
        raise typer.Exit(2)
    from ganserve.worker.app import app as celery_app

    configure_logging(settings.log_level, settings.log_format)
    argv = [
        "worker", "--pool", "solo", "--concurrency", "1",
        "--loglevel", settings.log_level, "--queues", queue or settings.training_queue,
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    argv += ["--hostname", name or default_worker_name()]
    celery_app.worker_main(argv)


def default_worker_name() -> str:
    """A Celery node name of this process alone: `ganserve-<pid>-<6 hex digits>@%h`.

    Celery's own default, `celery@<host>`, repeats wherever workers share a host name:
    containers on the host network all carry the host's, and in containers every worker has
    the same PID too (tini is 1). The random part keeps names (and the `<name>:<pid>` that
    holds a job's lease) apart there. Celery replaces `%h` with the host name.
    """
    return f"ganserve-{os.getpid()}-{secrets.token_hex(3)}@%h"


def migrate_command() -> None:
    """Apply the database migrations (what api, worker and up also do on start)."""
    from ganserve.store import upgrade_database

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    upgrade_database(settings.resolved_database_url)
    console.print("database is at the newest revision")


DEFAULT_URL = "http://127.0.0.1:8000"  # where `ganserve jobs|models ...` look without --url


def up_command(
    host: Annotated[
        str | None, typer.Option(help="Bind address of the API (default GANSERVE_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port of the API (default GANSERVE_PORT).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default GANSERVE_DATA_DIR or ./ganserve-data).")
    ] = None,
) -> None:
    """Start a private broker (unless REDIS_URL is set), the API and a worker; Ctrl-C stops all."""
    from ganserve.store import upgrade_database

    settings = get_settings()
    log_format = up_log_format(settings.log_format)
    configure_logging(settings.log_level, log_format)
    data = (data_dir or settings.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data)
    host, port = host or settings.host, port or settings.port
    url = f"http://{host}:{port}"
    upgrade_database(settings.resolved_database_url)

    broker: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    code = 0
    try:
        if not redis_url:
            broker = EmbeddedRedis(data / "broker", persistent=True).start()
            redis_url = broker.url
            # The URL holds the broker password: shown without it.
            console.print(f"broker: private Valkey on 127.0.0.1:{broker.port} (pid {broker.pid})")
        env = {**os.environ, "GANSERVE_DATA_DIR": str(data), "REDIS_URL": redis_url,
               "GANSERVE_LOG_FORMAT": log_format}  # fmt: skip
        exe = [sys.executable, "-m", "ganserve"]
        with Supervisor() as supervisor:
            api = supervisor.add("api", [*exe, "api", "--host", host, "--port", str(port)],
                                 env=env)  # fmt: skip
            wait_for_http(f"{url}/readyz", timeout=60, process=api)
            supervisor.add("worker", [*exe, "worker"], env=env)
            console.print(f"ganserve is up at {url} (web page at /, API docs at /docs); "
                          "Ctrl-C stops it")  # fmt: skip
            if url != DEFAULT_URL:
                console.print("the ganserve jobs/models commands find it with:")
                console.print(f"export GANSERVE_URL={url}", soft_wrap=True, highlight=False)
            code = supervisor.run()
    except ProcessError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:  # Ctrl-C before the supervisor took over the signal
        code = 0
    finally:
        if broker is not None:
            broker.stop()
    console.print("ganserve stopped" if code == 0 else f"ganserve stopped (exit code {code})")
    raise typer.Exit(code)


def up_log_format(configured: str) -> str:
    """Text logs when `ganserve up` runs in a terminal and GANSERVE_LOG_FORMAT is unset.

    JSON lines stay the default for services and whenever the output is piped or redirected.
    """
    if "GANSERVE_LOG_FORMAT" not in os.environ and sys.stderr.isatty():
        return "text"
    return configured
