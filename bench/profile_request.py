"""Where one samples.png request's time goes, end to end, stage by stage.

    python bench/profile_request.py [--requests 1000] [--steps 30]

Exports a reference `mlp` generator (28x28; `--steps` training steps, enough for timing),
registers it as version 1 of model `bench` in a fresh data dir (SQLite) with a private Redis,
builds the real app (`create_app`, the metrics middleware and every router included) and
sends it `--requests` GET samples.png requests one at a time (c=1), in-process over ASGI on
uvloop, for one image and for a 64-image grid. Each stage is timed by a wrapper around the
function that does it; what no wrapper covers is computed as a difference:

- metrics middleware: `MetricsMiddleware.__call__` minus the app inside it;
- FastAPI: routing, the endpoint's glue and the Response: the app inside the middleware minus
  the sampling call and the query validation;
- query validation (`routes.models._samples_query`, one pydantic model);
- batcher + thread hop: `answer.samples_png` minus what runs in the worker thread (`respond`):
  the coalescing queue, the hop to the thread pool and back, the future;
- in the thread: registry read (`GeneratorCache.resolve`), checks + headers + ETag
  (`PngRequest.headers`), noise (`make_noise`), the forward passes (a wrapper on the
  generator: their count and shapes), uint8 + copy (`to_uint8`), grid + PNG encode
  (`picture_png`), and the rest of `respond`;
- outside the app, measured on their own: uvicorn's access log line (JSON, as `ganserve api`
  configures logging, to a file), and HTTP itself: the bare endpoint (`bench/bare_app.py`) at
  c=1 over a real socket minus the same endpoint called in-process.

Each stage is printed in microseconds per request (mean over the requests, after 50 warm-up
requests) of wall-clock time and of CPU time of the thread that ran it (`time.thread_time`:
on a busy machine, waiting for a core inflates the wall column, much less the CPU one), with
its share of the in-process total. The CPU total adds the event loop's and the render
thread's; the hop's CPU column is the event loop's part of the sampling call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import uvloop

BENCH = Path(__file__).resolve().parent

Spent = defaultdict[str, float]


class Timers:
    """Seconds spent per stage (wall clock, and CPU of the calling thread), forward shapes."""

    def __init__(self) -> None:
        self.spent: Spent = defaultdict(float)  # wall
        self.cpu: Spent = defaultdict(float)  # time.thread_time of the thread that ran it
        self.shapes: Counter[str] = Counter()
        self.on = False

    def add(self, stage: str, seconds: float, cpu: float = 0.0) -> None:
        if self.on:
            self.spent[stage] += seconds
            self.cpu[stage] += cpu

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - start, time.thread_time() - cpu)

        return timed

    def wrap_async(
        self, stage: str, function: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()  # the event loop's thread
            try:
                return await function(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - start, time.thread_time() - cpu)

        return timed


@contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


def instrument(timers: Timers) -> list[Any]:
    """Wrap the stages' functions where they are looked up; the patches to undo."""
    from ganserve.gan import sample
    from ganserve.service.operations import telemetry
    from ganserve.service.routes import models as routes
    from ganserve.service.sampling import answer
    from ganserve.service.sampling.generator_cache import GeneratorCache

    patches = [
        patched(routes, "_samples_query", timers.wrap("query validation", routes._samples_query)),
        patched(answer, "samples_png", timers.wrap_async("sampling call", answer.samples_png)),
        patched(answer, "respond", timers.wrap("in thread: respond", answer.respond)),
        patched(GeneratorCache, "resolve", timers.wrap("registry read", GeneratorCache.resolve)),
        patched(
            answer.PngRequest,
            "headers",
            timers.wrap("checks+headers+ETag", answer.PngRequest.headers),
        ),
        patched(answer, "make_noise", timers.wrap("noise", answer.make_noise)),
        patched(sample, "to_uint8", timers.wrap("uint8+copy", sample.to_uint8)),
        patched(answer, "picture_png", timers.wrap("grid+PNG encode", answer.picture_png)),
    ]
    inner_call = telemetry.MetricsMiddleware.__call__

    async def middleware(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # the lifespan passes through, untimed
            await inner_call(self, scope, receive, send)
            return
        app, inside = self.app, [0.0, 0.0]

        async def timed_app(scope: Any, receive: Any, send: Any) -> None:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                await app(scope, receive, send)
            finally:
                inside[0] += time.perf_counter() - start
                inside[1] += time.thread_time() - cpu

        start, cpu = time.perf_counter(), time.thread_time()
        self.app = timed_app
        try:
            await inner_call(self, scope, receive, send)
        finally:
            self.app = app
            timers.add("app total", time.perf_counter() - start, time.thread_time() - cpu)
            timers.add("app inside middleware", inside[0], inside[1])

    patches.append(patched(telemetry.MetricsMiddleware, "__call__", middleware))
    for patch in patches:
        patch.__enter__()
    return patches


def hook_forward(generator: Any, timers: Timers) -> None:
    """Time the generator's passes: a wrapper on the instance's `forward_unhooked`, which the
    pipeline calls (module hooks would send it through nn.Module's slower call instead)."""
    unhooked = generator.forward_unhooked

    def timed(z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        start, cpu = time.perf_counter(), time.thread_time()
        output: torch.Tensor = unhooked(z, labels)
        timers.add("forward passes", time.perf_counter() - start, time.thread_time() - cpu)
        if timers.on:
            timers.shapes[f"{tuple(z.shape)} -> {tuple(output.shape)}"] += 1
        return output

    generator.forward_unhooked = timed


async def call(app: Any, path: str, query: str) -> tuple[int, bytes]:
    """One GET through the ASGI app; (status, body)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    status, body = 0, bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


async def lifespan_start(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[Any]]:
    incoming: asyncio.Queue[Any] = asyncio.Queue()
    outgoing: asyncio.Queue[Any] = asyncio.Queue()
    await incoming.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   incoming.get, outgoing.put))  # fmt: skip
    message = await outgoing.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {message}")
    return task, incoming


def stage_rows(s: dict[str, float], loop_cpu: bool) -> list[tuple[str, float]]:
    """(stage, us per request) from per-stage sums; `loop_cpu`: the CPU column, where the
    sampling call's own CPU is the event loop's part of it (the render thread's is apart)."""
    thread = s.get("in thread: respond", 0.0)
    inside = (
        s.get("registry read", 0.0) + s.get("checks+headers+ETag", 0.0) + s.get("noise", 0.0)
        + s.get("forward passes", 0.0) + s.get("uint8+copy", 0.0) + s.get("grid+PNG encode", 0.0)
    )  # fmt: skip
    hop = s["sampling call"] if loop_cpu else s["sampling call"] - thread
    return [
        ("metrics middleware", s["app total"] - s["app inside middleware"]),
        ("FastAPI routing, endpoint glue, Response",
         s["app inside middleware"] - s["sampling call"] - s.get("query validation", 0.0)),
        ("query validation (pydantic)", s.get("query validation", 0.0)),
        ("batcher + thread hop (there and back)", hop),
        ("  registry read (in thread)", s.get("registry read", 0.0)),
        ("  checks + headers + ETag (in thread)", s.get("checks+headers+ETag", 0.0)),
        ("  noise (in thread)", s.get("noise", 0.0)),
        ("  forward passes (in thread)", s.get("forward passes", 0.0)),
        ("  uint8 + copy (in thread)", s.get("uint8+copy", 0.0)),
        ("  grid + PNG encode (in thread)", s.get("grid+PNG encode", 0.0)),
        ("  rest of respond (in thread)", thread - inside),
    ]  # fmt: skip


def report(title: str, timers: Timers, requests: int, extra: dict[str, float]) -> None:
    wall = {k: v / requests * 1e6 for k, v in timers.spent.items()}  # us per request
    cpu = {k: v / requests * 1e6 for k, v in timers.cpu.items()}
    wall_total = wall["app total"]
    cpu_total = cpu["app total"] + cpu.get("in thread: respond", 0.0)  # loop + render thread
    print(f"\n{title}: {requests} requests at c=1, in-process ASGI (us per request)")
    print(f"  {'stage':<44}{'wall':>9}{'share':>7}{'CPU':>9}{'share':>7}")
    for (name, w), (_, c) in zip(stage_rows(wall, False), stage_rows(cpu, True), strict=True):
        print(
            f"  {name:<44}{w:9.1f}{100 * w / wall_total:6.1f}%{c:9.1f}{100 * c / cpu_total:6.1f}%"
        )
    print(f"  {'in-process total':<44}{wall_total:9.1f}{'':>7}{cpu_total:9.1f}")
    for name, us in extra.items():
        print(f"  {name:<44}{us:9.1f}  (outside the app)")
    shapes = ", ".join(f"{count / requests:g} x {shape}" for shape, count in timers.shapes.items())
    print(f"  forward passes per request: {shapes}")


def access_log_cost(root: Path, lines: int = 5000) -> float:
    """us per uvicorn access-log line, JSON-formatted as `ganserve api` logs, to a file."""
    from ganserve.logs import configure_logging

    saved = sys.stderr
    with (root / "access.log").open("w") as sink:
        sys.stderr = sink
        try:
            configure_logging("INFO", "json")
        finally:
            sys.stderr = saved
        logger = logging.getLogger("uvicorn.access")
        args = ("127.0.0.1:50000", "GET", "/v1/models/bench/samples.png?seed=1", "1.1", 200)
        start = time.thread_time()  # CPU: less sensitive to other processes than wall time
        for _ in range(lines):
            logger.info('%s - "%s %s HTTP/%s" %d', *args)
        spent = time.thread_time() - start
    logging.getLogger().handlers[:] = []
    return spent / lines * 1e6


def http_cost(root: Path, requests: int) -> float:
    """us per request of HTTP itself: the bare endpoint over a socket minus in-process."""
    from bare_app import app as bare
    from sampling import Servers, get_request, measure

    async def in_process() -> float:
        for _ in range(200):
            await call(bare, "/samples.png", "")
        start = time.perf_counter()
        for _ in range(requests):
            await call(bare, "/samples.png", "")
        return (time.perf_counter() - start) / requests

    local = uvloop.run(in_process())
    (root / "logs").mkdir(exist_ok=True)
    servers = Servers(root / "logs")
    try:
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "bare_app:app",
                "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]  # fmt: skip
        port = servers.start("bare", argv, {})
        cell = measure("bare", port, get_request("/samples.png", 1), 1, 2.0)
    finally:
        servers.stop()
    return (cell.p50 - local) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    from ganserve.runtime.embedded_redis import EmbeddedRedis
    from ganserve.service.app import create_app
    from ganserve.settings import Settings
    from sampling import MODEL, train_and_register

    root = Path(tempfile.mkdtemp(prefix="ganserve-profile-"))
    broker = EmbeddedRedis(root / "redis", persistent=False)
    try:
        settings = Settings(data_dir=root / "data")
        settings.data_dir.mkdir(parents=True)
        train_and_register(settings, args.steps)
        broker.start()
        settings = Settings(data_dir=root / "data", redis_url=broker.url)
        torch.set_num_threads(settings.torch_threads)
        print(f"torch threads {settings.torch_threads}; load average {os.getloadavg()}")
        extra = {
            "uvicorn access log line (JSON, to a file; CPU)": access_log_cost(root),
            "HTTP: uvicorn+httptools+socket+client (p50 wall)": http_cost(root, args.requests),
        }
        timers = Timers()
        patches = instrument(timers)  # held: a collected patch undoes itself
        app = create_app(settings)
        path = f"/v1/models/{MODEL}/samples.png"

        async def run() -> None:
            lifespan, _ = await lifespan_start(app)  # held: a dropped task is collected
            status, _ = await call(app, path, "seed=0")
            assert status == 200, status
            generators = app.state.context.generators
            for key in list(generators._entries):  # the loaded generator: hook its forward
                hook_forward(generators._entries[key].generator, timers)
            for title, query, step in (("one PNG", "seed={}", 1), ("64-grid", "n=64&seed={}", 64)):
                for i in range(50):
                    await call(app, path, query.format(i * step))
                timers.spent.clear()
                timers.cpu.clear()
                timers.shapes.clear()
                timers.on = True
                for i in range(args.requests):
                    status, body = await call(app, path, query.format((i + 100) * step))
                    assert status == 200 and body.startswith(b"\x89PNG"), status
                timers.on = False
                report(title, timers, args.requests, extra)

        uvloop.run(run())
        del patches
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
