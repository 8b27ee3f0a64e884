"""ganserve against TorchServe, a bare FastAPI endpoint and the in-process floor, in one run.

    python bench/vs_torchserve.py [--duration 3] [--rounds 3] [--concurrency 1 8 64]

Issue 18's side-by-side benchmark. One run:

- exports the reference model (MLP GAN, the built-in digits upscaled to 28x28, `--steps`
  training steps in this process; not trained through the API) and registers it as version 1
  of model `bench` in a fresh data dir (SQLite, artifacts), with a private Redis;
- measures the in-process floor: noise + one forward of exactly the images asked for + PNG
  (`plain_png`, what TorchServe's handler runs), in a plain loop, for one image and for a
  64-image grid, at 1 torch thread and at one per core (the fastest counts);
- starts, each in its own process group, `python -m ganserve api` as shipped, the bare
  endpoint (`bench/bare_app.py`: FastAPI returning a fixed 28x28 PNG under the same uvicorn
  options) and TorchServe 0.12 serving the same exported generator through a custom handler
  (`bench/torchserve_handler.py`: JSON body `{"seed", "n"}` in, PNG out; one worker, batch
  size 1, torch's default threads, token auth disabled, its access log as shipped: `ts`), and
  a second TorchServe whose worker runs torch at 1 thread (`ts1`, for information: on a busy
  2-core machine torch's default 2-thread OpenMP collapses, which flatters ganserve);
- loads them in interleaved rounds (every round runs every cell once, so machine noise hits
  all servers alike) at each concurrency for `--duration` s after 1 s of warm-up: one PNG
  (a new seed every request) and a 64-image grid (8 per row);
- prints req/s, p50, p99 and p99/p50 (the median round of each cell) and issue 18's target
  ratios, each marked met or NOT MET.

TorchServe is a benchmark-only tool, not a dependency of the project: it lives in its own
virtual environment (`--ts-venv`, made on first use with pip: torch of the same version as
this one, torchserve, torch-model-archiver, pyyaml, safetensors, numpy, Pillow) and needs Java 17.
Its handler imports `ganserve.gan` from this checkout's `src`.

The load generator is `sampling.py`'s: raw asyncio on uvloop in this process, N keep-alive
connections each sending pre-built HTTP/1.1 requests (GET for ganserve and the bare endpoint,
POST with a JSON body for TorchServe) one at a time and reading Content-Length bodies; about
20-30 us of CPU per request, on the same cores as the servers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from pathlib import Path

import httpx
import torch

from ganserve.gan.models import Generator
from ganserve.gan.sample import encode_png, make_grid, make_noise, to_uint8
from ganserve.runtime.embedded_redis import EmbeddedRedis
from ganserve.runtime.supervisor import free_port
from ganserve.settings import Settings
from sampling import (
    GRID,
    HOST,
    MODEL,
    Cell,
    Servers,
    floor_rate,
    get_request,
    interrupt_on_sigterm,
    load_average,
    machine,
    measure,
    median_cell,
    train_and_register,
)

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
TS_MODEL = "gen"
TS_VERSION = "0.12.0"
DEFAULT_TS_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "ganserve-bench/torchserve-venv"
)
# (label, server, what): the cells of a round, in the order they run
# ts: TorchServe as shipped (torch's default threads, one per core); ts1: its worker at 1 thread
KINDS = {
    "bare": ("bare", "png"),
    "ts-png": ("torchserve", "png"),
    "ts1-png": ("torchserve1", "png"),
    "gs-png": ("ganserve", "png"),
    "ts-grid": ("torchserve", "grid"),
    "ts1-grid": ("torchserve1", "grid"),
    "gs-grid": ("ganserve", "grid"),
}


# ----------------------------------------------------------------------------- TorchServe


def ensure_torchserve(path: Path) -> Path:
    """The venv holding TorchServe; made (pip, the package registry) when missing."""
    if (path / "bin" / "torchserve").exists() and (path / "bin" / "torch-model-archiver").exists():
        return path
    print(f"making TorchServe's venv in {path} (once)", flush=True)
    venv.create(path, with_pip=True)
    torch_version = torch.__version__.split("+")[0]
    packages = [
        f"torch=={torch_version}",
        f"torchserve=={TS_VERSION}",
        f"torch-model-archiver=={TS_VERSION}",
        "pyyaml",
        "safetensors",
        "numpy",
        "pillow",
    ]
    subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q", *packages], check=True
    )
    return path


def archive(ts_venv: Path, exported: Path, store: Path) -> None:
    """gen.mar in `store`: the exported generator's two files and the bench handler."""
    files = ",".join(str(exported / name) for name in ("generator.safetensors", "generator.json"))
    subprocess.run(
        [
            str(ts_venv / "bin" / "torch-model-archiver"),
            "--model-name",
            TS_MODEL,
            "--version",
            "1.0",
            "--handler",
            str(BENCH / "torchserve_handler.py"),
            "--extra-files",
            files,
            "--export-path",
            str(store),
        ],
        check=True,
    )


def start_torchserve(
    name: str, ts_venv: Path, root: Path, exported: Path, servers: Servers, threads: int | None
) -> int:
    """TorchServe with one worker for gen.mar; its inference port once a prediction works.

    `threads`: the worker's torch threads (None: torch's default, as TorchServe ships).
    """
    store, tmp, logs = root / f"{name}-store", root / f"{name}-tmp", root / "logs" / name
    for folder in (store, tmp, logs):
        folder.mkdir(parents=True)
    archive(ts_venv, exported, store)
    port = free_port(HOST)
    config = root / f"{name}.properties"
    config.write_text(
        f"inference_address=http://{HOST}:{port}\n"
        f"management_address=http://{HOST}:{free_port(HOST)}\n"
        f"metrics_address=http://{HOST}:{free_port(HOST)}\n"
        f"grpc_inference_port={free_port(HOST)}\n"  # not 7070/7071: two TorchServes at once
        f"grpc_management_port={free_port(HOST)}\n"
        "default_workers_per_model=1\n"
        "disable_token_authorization=true\n"
        "install_py_dep_per_model=false\n"
    )
    argv = [
        str(ts_venv / "bin" / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--model-store",
        str(store),
        "--models",
        f"{TS_MODEL}={TS_MODEL}.mar",
        "--ts-config",
        str(config),
        "--disable-token-auth",
    ]
    env = {
        "GANSERVE_SRC": str(SRC),
        "TMPDIR": str(tmp),  # its pid file: never another TorchServe's
        "TEMP": str(tmp),
        "LOG_LOCATION": str(logs),
        "METRICS_LOCATION": str(logs),
        "PATH": f"{ts_venv / 'bin'}:{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(ts_venv),
        **({} if threads is None else {"GANSERVE_BENCH_TS_THREADS": str(threads)}),
    }
    with (root / "logs" / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    servers.started.append((name, process))
    deadline = time.monotonic() + 180
    url = f"http://{HOST}:{port}/predictions/{TS_MODEL}"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"TorchServe exited ({process.returncode}); see its log")
        try:
            answer = httpx.post(url, json={"seed": 1}, timeout=5, trust_env=False)
            if answer.status_code == 200 and answer.content.startswith(b"\x89PNG"):
                return port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            print((root / "logs" / f"{name}.log").read_text()[-3000:], file=sys.stderr)
            raise RuntimeError("TorchServe did not answer a prediction within 180 s")
        time.sleep(0.5)


def torchserve_threads(root: Path, name: str) -> str:
    """Torch threads of TorchServe's worker, as its handler logged them."""
    for path in sorted((root / "logs" / name).rglob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if "ganserve bench handler: torch threads" in line:
                return line.rsplit(" ", 1)[-1]
    return "?"


def post_request(path: str, body: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """i -> a POST of `path` with the JSON body(i)."""

    def request(i: int) -> bytes:
        payload = body(i)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload

    return request


# ----------------------------------------------------------------------------- floor


def plain_png(generator: Generator, seeds: range) -> bytes:
    """What TorchServe's handler does per request (torchserve_handler.plain_png, the same code):
    the seeds' noise, one forward of exactly those rows, the PNG (8 images per grid row)."""
    z, _ = make_noise(seeds, generator.spec)
    with torch.inference_mode():
        images = to_uint8(generator(z))  # (N, H, W, C) uint8
    return encode_png(images[0] if len(seeds) == 1 else make_grid(images, 8))


def floors(exported: Path, seconds: float, threads: list[int]) -> dict[str, float]:
    """Calls/s of noise + forward + PNG in a plain loop: {"png"|"grid": best over threads}."""
    from ganserve.gan.checkpoint import load_generator

    g = load_generator(exported).generator

    def one(i: int) -> bytes:
        return plain_png(g, range(i, i + 1))

    def grid(i: int) -> bytes:
        return plain_png(g, range(i * GRID, (i + 1) * GRID))

    before = torch.get_num_threads()
    best: dict[str, float] = {}
    try:
        for count in threads:
            torch.set_num_threads(count)
            for name, work in (("png", one), ("grid", grid)):
                rate = floor_rate(work, seconds)
                print(f"floor {name:<4} {count} thread(s): {rate:8.1f} calls/s", flush=True)
                best[name] = max(best.get(name, 0.0), rate)
    finally:
        torch.set_num_threads(before)
    return best


# ----------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(results: dict[tuple[str, int], list[Cell]], floor: dict[str, float]) -> None:
    print()
    print(
        f"{'endpoint':<10}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>9}"
        f"{'errors':>8}"
    )
    chosen: dict[tuple[str, int], Cell] = {}
    for (kind, c), cells in sorted(results.items(), key=lambda x: (x[0][1], x[0][0])):
        cell = chosen[(kind, c)] = median_cell(cells)
        errors = sum(x.errors for x in cells)
        print(
            f"{kind:<10}{c:>4}{cell.rate:>10.1f}{cell.p50 * 1e3:>9.2f}{cell.p99 * 1e3:>9.2f}"
            f"{cell.p99 / cell.p50:>9.2f}{errors:>8}"
        )
    floor_png_ms, floor_grid = 1e3 / floor["png"], floor["grid"]
    print()
    print(
        f"in-process floor: one PNG {floor_png_ms:.3f} ms ({floor['png']:.0f}/s), "
        f"64-grid {1e3 / floor_grid:.3f} ms ({floor_grid:.0f}/s)"
    )

    def line(text: str, value: float, target: str, ok: bool) -> None:
        print(f"{text:<52}{value:8.2f}   target {target:<8} {verdict(ok)}")

    def pick(kind: str, c: int) -> Cell | None:
        return chosen.get((kind, c))

    print("targets (issue 18) against TorchServe as shipped (ts); the same ratio against its")
    print("1-thread worker (ts1) follows each, for information")

    def against_ts1(text: str, ours: Cell | None, kind: str, c: int, latency: bool) -> None:
        theirs = pick(kind, c)
        if ours and theirs:
            ratio = ours.p50 / theirs.p50 if latency else ours.rate / theirs.rate
            print(f"{'   ' + text:<52}{ratio:8.2f}")

    gs1, ts1, bare1 = pick("gs-png", 1), pick("ts-png", 1), pick("bare", 1)
    if gs1 and ts1:
        ratio = gs1.p50 / ts1.p50
        line("1. one PNG c=1: p50 ganserve / TorchServe", ratio, "<= 1", ratio <= 1)
    against_ts1("one PNG c=1: p50 ganserve / ts1", gs1, "ts1-png", 1, True)
    if gs1 and bare1:
        bound = 2 * (bare1.p50 * 1e3 + floor_png_ms)
        ratio = gs1.p50 * 1e3 / bound
        line(
            f"   one PNG c=1: p50 / 2x(bare p50 + floor) = {bound:.2f} ms",
            ratio,
            "<= 1",
            ratio <= 1,
        )
    gsg1, tsg1 = pick("gs-grid", 1), pick("ts-grid", 1)
    if gsg1 and tsg1:
        ratio = gsg1.rate / tsg1.rate
        line("   64-grid c=1: req/s ganserve / TorchServe", ratio, ">= 1.5", ratio >= 1.5)
    against_ts1("64-grid c=1: req/s ganserve / ts1", gsg1, "ts1-grid", 1, False)
    if gsg1:
        ratio = gsg1.rate / floor_grid
        line("   64-grid c=1: req/s ganserve / in-process floor", ratio, ">= 0.8", ratio >= 0.8)
    for c in sorted({c for _, c in chosen}):
        if c == 1:
            continue
        a, b = pick("gs-png", c), pick("ts-png", c)
        if a and b:
            ratio = a.rate / b.rate
            line(f"2. one PNG c={c}: req/s ganserve / TorchServe", ratio, ">= 2", ratio >= 2)
        against_ts1(f"one PNG c={c}: req/s ganserve / ts1", a, "ts1-png", c, False)
        a, b = pick("gs-grid", c), pick("ts-grid", c)
        if a and b:
            ratio = a.rate / b.rate
            line(f"   64-grid c={c}: req/s ganserve / TorchServe", ratio, ">= 1.5", ratio >= 1.5)
        against_ts1(f"64-grid c={c}: req/s ganserve / ts1", a, "ts1-grid", c, False)
    top = max(c for _, c in chosen)
    for kind in ("gs-png", "gs-grid"):
        found = pick(kind, top)
        if found:
            ratio = found.p99 / found.p50
            line(f"   {kind} c={top}: p99 / p50", ratio, "<= 3", ratio <= 3)


# ----------------------------------------------------------------------------- main


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {load_average()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per cell")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--steps", type=int, default=300, help="training steps of the model")
    parser.add_argument("--floor-seconds", type=float, default=2.0)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument(
        "--ts-venv",
        type=Path,
        default=DEFAULT_TS_VENV,
        help="TorchServe's virtual environment (made when missing)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    threads = Settings().torch_threads
    torch.set_num_threads(threads)
    print(f"machine: {machine()}; torch {torch.__version__}")
    print(f"command: python bench/vs_torchserve.py {shlex.join(sys.argv[1:])}")
    print(f"uptime at start: {uptime()}")
    root = Path(tempfile.mkdtemp(prefix="ganserve-vs-ts-"))
    (root / "logs").mkdir()
    servers = Servers(root / "logs")
    broker = EmbeddedRedis(root / "redis", persistent=False)
    try:
        with interrupt_on_sigterm():
            run(args, root, servers, broker, threads)
    finally:
        servers.stop()
        broker.stop()
        if args.keep:
            print(f"logs kept in {root / 'logs'}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(
    args: argparse.Namespace, root: Path, servers: Servers, broker: EmbeddedRedis, threads: int
) -> None:
    ts_venv = ensure_torchserve(args.ts_venv) if any("ts" in k for k in args.kinds) else None
    settings = Settings(data_dir=root / "data", torch_threads=threads)
    settings.data_dir.mkdir(parents=True)
    started = time.perf_counter()
    _, exported = train_and_register(settings, args.steps)
    print(
        f"model: reference mlp, {args.steps} steps on digits upscaled to 28x28, exported and "
        f"registered directly as {MODEL!r} v1 ({time.perf_counter() - started:.0f} s)"
    )
    floor = floors(exported, args.floor_seconds, sorted({1, os.cpu_count() or 1}))

    broker.start()
    env = {
        "GANSERVE_DATA_DIR": str(settings.data_dir),
        "REDIS_URL": broker.url,
        "GANSERVE_TORCH_THREADS": str(threads),
    }
    ports: dict[str, int] = {}
    servers_used = {KINDS[k][0] for k in args.kinds}
    if "bare" in servers_used:
        bare_argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(BENCH),
            "bare_app:app",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ]
        ports["bare"] = servers.start("bare", bare_argv, env)
    if "ganserve" in servers_used:
        ports["ganserve"] = servers.start(
            "ganserve", [sys.executable, "-m", "ganserve", "api"], env
        )
    for name, threads_ in (("torchserve", None), ("torchserve1", 1)):
        if name in servers_used:
            assert ts_venv is not None
            ports[name] = start_torchserve(name, ts_venv, root, exported, servers, threads_)
            print(
                f"{name}: TorchServe {TS_VERSION}, 1 worker, batch size 1, torch threads "
                f"{torchserve_threads(root, name)}{' (its default)' if threads_ is None else ''}"
            )
    print(
        f"ganserve: `python -m ganserve api`, torch threads {threads}; bare: uvicorn "
        "bare_app:app --loop uvloop --http httptools"
    )

    grid_body: Callable[[int], bytes] = lambda i: b'{"seed": %d, "n": 64}' % (i * GRID)  # noqa: E731
    requests = {
        "bare": get_request("/samples.png", 1),
        "gs-png": get_request(f"/v1/models/{MODEL}/samples.png", 1),
        "gs-grid": get_request(f"/v1/models/{MODEL}/samples.png?n={GRID}", GRID),
        "ts-png": post_request(f"/predictions/{TS_MODEL}", lambda i: b'{"seed": %d}' % i),
        "ts-grid": post_request(f"/predictions/{TS_MODEL}", grid_body),
        "ts1-png": post_request(f"/predictions/{TS_MODEL}", lambda i: b'{"seed": %d}' % i),
        "ts1-grid": post_request(f"/predictions/{TS_MODEL}", grid_body),
    }
    for kind in args.kinds:  # warm every path (the generator loads on first use)
        measure("warm-up", ports[KINDS[kind][0]], requests[kind], 1, 0.5)
    results: dict[tuple[str, int], list[Cell]] = {}
    for round_ in range(args.rounds):
        for c in args.concurrency:
            for kind in args.kinds:
                cell = measure(kind, ports[KINDS[kind][0]], requests[kind], c, args.duration)
                results.setdefault((kind, c), []).append(cell)
                print(
                    f"round {round_ + 1} {kind:<8} c={c:<3} {cell.rate:8.1f} req/s  "
                    f"p50 {cell.p50 * 1e3:7.2f} ms  p99 {cell.p99 * 1e3:7.2f} ms  "
                    f"errors {cell.errors}",
                    flush=True,
                )
    report(results, floor)
    print(f"uptime at end: {uptime()}")


if __name__ == "__main__":
    main()
