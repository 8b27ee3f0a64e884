"""Sampling over HTTP against a bare HTTP endpoint and against the in-process floor.

    python bench/sampling.py [--duration 5] [--concurrency 1 8 64] [--rounds 1] [--steps 300]

In one run: trains the reference model (MLP GAN, the built-in digits upscaled to 28x28) for a
few hundred steps, exports it and registers it in a fresh data dir (SQLite, artifacts), starts
a private Redis (`EmbeddedRedis`, never the machine's), then

- the in-process floor: noise + generator forward + PNG encode in a plain loop, one image and
  one 64-image grid at a time (`plain`: one forward of exactly the images asked for, as a
  script would write it; `service`: `gan.sample.sample_png`, the one pixel pipeline the
  service, the CLI and bulk export share, with its fixed-shape forward passes), with the
  server's torch threads and with one per core; the ratios use the fastest;
- the real service, `python -m ganserve api` (uvicorn as shipped), a bare FastAPI endpoint
  returning a fixed 28x28 PNG (`bench/bare_app.py`) and the naive endpoint of issue 6 (a
  `def` route rendering one image per request, `bench/naive_app.py`) under the same uvicorn
  options, loaded at each concurrency for `--duration` seconds: GET samples.png for one image
  (a new seed every request, so nothing is served from a cache) and, from the service, for a
  64-image grid.

The load generator is raw asyncio (uvloop) in this process: N keep-alive connections, each
sending pre-built HTTP/1.1 GETs one at a time and reading Content-Length bodies. It shares
the machine's cores with the server: on a 2-core machine it takes a good part of one core at
high request rates, which lowers the bare endpoint's number more than the service's.

`--uvicorn-args "..."` runs both servers with `python -m uvicorn ...` and those options
instead (e.g. "--loop asyncio --http h11", "--workers 2"), to compare settings. Every process
started here is stopped by PID (its process group) at the end, on errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import httpx
import torch
import uvloop

from ganserve.gan.checkpoint import export_generator, load_generator
from ganserve.gan.config import TrainConfig
from ganserve.gan.sample import encode_png, make_grid, make_noise, sample_png, to_uint8
from ganserve.gan.train import train
from ganserve.runtime.embedded_redis import EmbeddedRedis
from ganserve.runtime.supervisor import free_port, stop_process_group, wait_for_http
from ganserve.service.sampling.generator_cache import CachedGenerator
from ganserve.settings import Settings
from ganserve.store import Store, jobs, registry
from train_speed import mnist_sized_digits

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
MODEL = "bench"
GRID = 64  # images of a grid request
WARMUP_S = 1.0  # per cell, not counted


# ----------------------------------------------------------------------------- results


@dataclass
class Cell:
    """One load level against one endpoint: completed requests and their latencies."""

    kind: str
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, of requests done in time
    errors: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return self.percentile(0.50)

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


# ----------------------------------------------------------------------------- load generator


class _Load:
    """Shared state of one cell's connections."""

    def __init__(self, request: Callable[[int], bytes], warm_until: float, until: float) -> None:
        self.request = request
        self.warm_until = warm_until
        self.until = until
        self.sent = 0
        self.latencies: list[float] = []
        self.errors = 0

    def next_request(self) -> bytes:
        self.sent += 1
        return self.request(self.sent)

    def record(self, started: float, finished: float, status: int) -> None:
        if finished < self.warm_until or finished > self.until:
            return
        if status == 200:
            self.latencies.append(finished - started)
        else:
            self.errors += 1


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request, its whole response, the next request."""

    def __init__(self, load: _Load, closed: asyncio.Future[None]) -> None:
        self.load = load
        self.closed = closed
        self.buffer = bytearray()
        self.expected = -1  # bytes of the response being read (head + body); -1: head unread
        self.status = 0
        self.started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        now = time.perf_counter()
        if now >= self.load.until:
            self.transport.close()
            return
        self.started = now
        self.transport.write(self.load.next_request())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected < 0:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buffer[:head_end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
            self.expected = head_end + 4 + length
        if len(self.buffer) < self.expected:
            return
        del self.buffer[: self.expected]
        self.expected = -1
        self.load.record(self.started, time.perf_counter(), self.status)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.expected >= 0 or exc is not None:
            self.load.errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


async def _run_load(
    port: int, request: Callable[[int], bytes], concurrency: int, duration: float
) -> _Load:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    load = _Load(request, start + WARMUP_S, start + WARMUP_S + duration)
    closed: list[asyncio.Future[None]] = []
    for _ in range(concurrency):
        done: asyncio.Future[None] = loop.create_future()
        closed.append(done)
        await loop.create_connection(lambda done=done: _Connection(load, done), HOST, port)  # type: ignore[misc]
    await asyncio.gather(*closed)
    return load


def measure(
    kind: str, port: int, request: Callable[[int], bytes], concurrency: int, duration: float
) -> Cell:
    load = uvloop.run(_run_load(port, request, concurrency, duration))
    return Cell(kind, concurrency, duration, load.latencies, load.errors)


def get_request(path: str, seed_step: int) -> Callable[[int], bytes]:
    """i -> a GET of `path` with seed=i*seed_step appended (a new seed every request)."""
    head = f"GET {path}{'&' if '?' in path else '?'}seed=".encode()
    tail = b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n"
    return lambda i: head + str(i * seed_step).encode() + tail


# ----------------------------------------------------------------------------- the floor


def floor_rate(work: Callable[[int], bytes], seconds: float) -> float:
    """Calls/s of work(i) in a plain loop (after a short warm-up)."""
    for i in range(20):
        work(i)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work(count)
        count += 1
    return count / (time.perf_counter() - start)


def floors(cached: CachedGenerator, seconds: float, threads: list[int]) -> dict[str, float]:
    """Calls/s of each floor loop, keyed "<kind> <path>, <n> thread(s)"."""
    g = cached.generator

    def plain(z: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # one forward of exactly these rows
            return to_uint8(g(z, None))

    def plain_one(i: int) -> bytes:
        z, _ = make_noise([i], g.spec)
        return encode_png(plain(z)[0])

    def plain_grid(i: int) -> bytes:
        z, _ = make_noise(range(i * GRID, (i + 1) * GRID), g.spec)
        return encode_png(make_grid(plain(z), 8))

    def service_one(i: int) -> bytes:
        return sample_png(g, [i])

    def service_grid(i: int) -> bytes:
        return sample_png(g, range(i * GRID, (i + 1) * GRID), nrow=8)

    loops = {"png plain": plain_one, "png service": service_one,
             "grid plain": plain_grid, "grid service": service_grid}  # fmt: skip
    before = torch.get_num_threads()
    rates: dict[str, float] = {}
    try:
        for count in threads:
            torch.set_num_threads(count)
            for name, work in loops.items():
                rates[f"{name}, {count} thread{'s' if count > 1 else ''}"] = floor_rate(
                    work, seconds
                )
    finally:
        torch.set_num_threads(before)
    return rates


def best_floor(floor: dict[str, float], kind: str) -> tuple[str, float]:
    """The fastest floor loop of a kind ("png plain", "grid plain", ...) over thread counts."""
    return max(((k, v) for k, v in floor.items() if k.startswith(kind + ",")), key=lambda x: x[1])


# ----------------------------------------------------------------------------- setup


def train_and_register(settings: Settings, steps: int) -> tuple[CachedGenerator, Path]:
    """Trains the reference model, exports it into a job dir and registers version 1.

    Returns it loaded, and the folder of its export.
    """
    store = Store.from_settings(settings)
    try:
        with store.session() as session:
            job = jobs.create_job(session, MODEL, {"dataset": "digits28"}, total_steps=steps)
            folder = store.artifacts.job_dir(job.id) / "generator"
            config = TrainConfig(
                steps=steps, device="cpu", checkpoint_every=steps, sample_every=steps
            )
            with tempfile.TemporaryDirectory() as run_dir:
                result = train(config, mnist_sized_digits(), Path(run_dir))
            description = export_generator(result.state, folder, "digits28")
            registry.register_version(
                session, MODEL, job.id, steps, store.artifacts.relative(folder), description, {}
            )
            attempt = jobs.claim_job(session, job.id, "bench", lease_s=60)
            assert attempt is not None
            jobs.finish_job(session, job.id, attempt, "succeeded")  # nothing left to reap
    finally:
        store.close()
    loaded = load_generator(folder)
    return CachedGenerator(MODEL, 1, loaded.generator, loaded.description, "bench"), folder


class Servers:
    """The processes this run started, each in its own process group; stop() stops them all."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> int:
        port = free_port(HOST)
        argv = [*argv, "--host", HOST, "--port", str(port)]
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append((name, process))
        try:
            wait_for_http(f"http://{HOST}:{port}/healthz", 90, process=process)
        except Exception:
            print((self.logs / f"{name}.log").read_text()[-3000:], file=sys.stderr)
            raise
        return port

    def stop(self) -> None:
        while self.started:
            name, process = self.started.pop()
            stop_process_group(process, 10, name=name)


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so `finally` blocks stop what was started."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- report


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()} {model}, {os.cpu_count()} cores".strip()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def median_cell(cells: list[Cell]) -> Cell:
    """The cell with the median rate (its latencies stay consistent with its rate)."""
    ordered = sorted(cells, key=lambda cell: cell.rate)
    return ordered[(len(ordered) - 1) // 2]


def report(
    results: dict[tuple[str, int], list[Cell]], floor: dict[str, float], concurrency: list[int]
) -> dict[str, Any]:
    print()
    print("in-process floor (calls/s in a plain loop in this process):")
    for name, rate in floor.items():
        print(f"  {name:<28} {rate:9.1f}")
    print()
    columns = ("p50 ms", "p99 ms", "p99/p50")
    heading = f"{'endpoint':<16}{'c':>4}{'req/s':>10}" + "".join(f"{x:>9}" for x in columns)
    print(heading + f"{'errors':>8}")
    chosen: dict[tuple[str, int], Cell] = {}
    for (kind, c), cells in results.items():
        cell = chosen[(kind, c)] = median_cell(cells)
        errors = sum(x.errors for x in cells)
        print(
            f"{kind:<16}{c:>4}{cell.rate:>10.1f}{cell.p50 * 1e3:>9.2f}{cell.p99 * 1e3:>9.2f}"
            f"{cell.p99 / cell.p50:>9.2f}{errors:>8}"
        )
    ratios: dict[str, Any] = {}
    print()
    if ("png", 8) in chosen and ("bare", 8) in chosen:
        ratio = chosen[("png", 8)].rate / chosen[("bare", 8)].rate
        ratios["png_c8_vs_bare"] = ratio
        print(f"single PNG c=8 / bare endpoint c=8:              {ratio:5.2f}x  (target >= 0.60)")
    if ("png", 8) in chosen and ("naive", 8) in chosen:
        ratio = chosen[("png", 8)].rate / chosen[("naive", 8)].rate
        ratios["png_c8_vs_naive"] = ratio
        print(f"single PNG c=8 / naive endpoint c=8:             {ratio:5.2f}x  (no target)")
    if ("grid", 8) in chosen:
        for kind in ("grid plain", "grid service"):
            name, rate = best_floor(floor, kind)
            ratio = chosen[("grid", 8)].rate / rate
            ratios[f"grid_c8_vs_floor_{kind.split()[1]}"] = ratio
            target = "  (target >= 0.85)" if kind == "grid plain" else ""
            print(f"grid c=8 / best floor ({name}): {ratio:5.2f}x{target}")
    if ("png", 1) in chosen:
        name, rate = best_floor(floor, "png plain")
        ratio = chosen[("png", 1)].rate / rate
        ratios["png_c1_vs_floor_plain"] = ratio
        print(f"single PNG c=1 / best floor ({name}): {ratio:5.2f}x  (no target)")
    top = max(concurrency)
    for kind in ("bare", "png", "grid"):
        if (kind, top) in chosen:
            cell = chosen[(kind, top)]
            ratios[f"{kind}_c{top}_p99_over_p50"] = cell.p99 / cell.p50
            target = "  (target <= 3)" if kind != "bare" else ""
            print(f"{kind} c={top} p99/p50:{'':<34}{cell.p99 / cell.p50:5.2f}x{target}")
    return ratios


def print_batching(port: int) -> None:
    """The service's coalescing counters from /metrics, where it exports them."""
    try:
        text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10, trust_env=False).text
    except httpx.HTTPError:
        return
    values = {}
    for line in text.splitlines():
        if line.startswith("ganserve_sample_batch"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    batches = values.get("ganserve_sample_batches_total")
    requests = values.get("ganserve_sample_batched_requests_total")
    if batches and requests:
        print(f"coalescing: {requests:.0f} samples.png requests in {batches:.0f} batches "
              f"({requests / batches:.1f} a batch)")  # fmt: skip


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, default=1, help="repeat every cell; medians")
    parser.add_argument("--steps", type=int, default=300, help="training steps of the model")
    parser.add_argument("--floor-seconds", type=float, default=3.0)
    parser.add_argument("--torch-threads", type=int, default=Settings().torch_threads)
    parser.add_argument("--kinds", nargs="+", default=["bare", "naive", "png", "grid"])
    parser.add_argument(
        "--uvicorn-args",
        default=None,
        help='run both servers as `python -m uvicorn` with these options, e.g. "--workers 2"',
    )
    parser.add_argument("--log-level", default="INFO", help="GANSERVE_LOG_LEVEL of the service")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    torch.set_num_threads(args.torch_threads)
    print(f"machine: {machine()}; torch {torch.__version__}, {args.torch_threads} thread(s)")
    print(f"command: python bench/sampling.py {shlex.join(sys.argv[1:])}")
    print(f"load average at start: {load_average()}")
    root = Path(tempfile.mkdtemp(prefix="ganserve-bench-"))
    (root / "logs").mkdir()
    servers = Servers(root / "logs")
    broker = EmbeddedRedis(root / "redis", persistent=False)
    try:
        with interrupt_on_sigterm():
            run(args, root, servers, broker)
    finally:
        servers.stop()
        broker.stop()
        if args.keep:
            print(f"logs kept in {root / 'logs'}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path, servers: Servers, broker: EmbeddedRedis) -> None:
    settings = Settings(data_dir=root / "data", torch_threads=args.torch_threads)
    settings.data_dir.mkdir(parents=True)
    started = time.perf_counter()
    cached, exported = train_and_register(settings, args.steps)
    took = time.perf_counter() - started
    print(f"trained and registered {MODEL!r} ({args.steps} steps, {took:.0f} s)")
    floor = floors(cached, args.floor_seconds, sorted({args.torch_threads, os.cpu_count() or 1}))

    broker.start()
    env = {
        "GANSERVE_DATA_DIR": str(settings.data_dir),
        "REDIS_URL": broker.url,
        "GANSERVE_TORCH_THREADS": str(args.torch_threads),
        "GANSERVE_LOG_LEVEL": args.log_level,
    }
    if args.uvicorn_args is None:
        # `ganserve api` as shipped; the bare app under the uvicorn options it uses
        service_argv = [sys.executable, "-m", "ganserve", "api"]
        uvicorn_options = ["--log-level", args.log_level.lower()]
        print(
            "servers: `python -m ganserve api`; bare and naive apps: uvicorn "
            + shlex.join(uvicorn_options)
        )
    else:
        uvicorn_options = ["--log-level", args.log_level.lower(), *shlex.split(args.uvicorn_args)]
        factory = "ganserve.service.app:create_app"
        service_argv = [sys.executable, "-m", "uvicorn", "--factory", factory, *uvicorn_options]
        print("servers: uvicorn " + shlex.join(uvicorn_options))
    ports: dict[str, int] = {}
    if "bare" in args.kinds:
        bare_argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "bare_app:app",
                     *uvicorn_options]  # fmt: skip
        ports["bare"] = servers.start("bare", bare_argv, env)
    if "naive" in args.kinds:
        naive_argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "naive_app:app",
                      *uvicorn_options]  # fmt: skip
        naive_env = {**env, "GANSERVE_BENCH_GENERATOR": str(exported)}
        ports["naive"] = servers.start("naive", naive_argv, naive_env)
    if "png" in args.kinds or "grid" in args.kinds:
        ports["service"] = servers.start("service", service_argv, env)
        # load the generator before measuring
        measure(
            "warm-up", ports["service"], get_request(f"/v1/models/{MODEL}/samples.png", 1), 1, 0.5
        )

    requests = {
        "bare": ("bare", get_request("/samples.png", 1)),
        "naive": ("naive", get_request("/samples.png", 1)),
        "png": ("service", get_request(f"/v1/models/{MODEL}/samples.png", 1)),
        "grid": ("service", get_request(f"/v1/models/{MODEL}/samples.png?n={GRID}", GRID)),
    }
    results: dict[tuple[str, int], list[Cell]] = {}
    for round_ in range(args.rounds):
        for c in args.concurrency:
            for kind in args.kinds:
                server, request = requests[kind]
                cell = measure(kind, ports[server], request, c, args.duration)
                results.setdefault((kind, c), []).append(cell)
                print(
                    f"round {round_ + 1} {kind:<5} c={c:<3} {cell.rate:8.1f} req/s  "
                    f"p50 {cell.p50 * 1e3:6.2f} ms  p99 {cell.p99 * 1e3:6.2f} ms",
                    f"errors {cell.errors}",
                    flush=True,
                )
    ratios = report(results, floor, args.concurrency)
    if "service" in ports:
        print_batching(ports["service"])
    print(f"load average at end: {load_average()}")
    if args.json is not None:
        summary = {
            "floor": floor,
            "cells": {
                f"{kind} c={c}": [{"rate": x.rate, "p50": x.p50, "p99": x.p99} for x in cells]
                for (kind, c), cells in results.items()
            },
            "ratios": ratios,
        }
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
