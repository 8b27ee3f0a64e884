"""The GPU path: train, serve and sample the reference `mlp` and `dcgan` on a CUDA device.

    python bench/gpu.py [--device cuda] [--steps 500] [--archs mlp dcgan]
                        [--precisions fp32 bf16] [--seconds 3] [--no-http]
    python bench/gpu.py --device cpu --steps 20 --seconds 0.5    # a dry run of every step

For each architecture and precision (bf16 = autocast, CUDA only; skipped elsewhere), on the
built-in digits upscaled to 28x28 (nothing is downloaded):

1. trains with the default spec for `--steps` steps through `gan.train.train` on the device
   and prints steps/s (wall clock, the device synchronised) and the peak device memory;
2. exports the EMA generator, loads it back on the device and samples it in-process with the
   one pixel pipeline (`gan.sample.sample_png`: seeded CPU noise, fixed-shape forward passes
   on the device, PNG): images/s for one PNG and for 64-image grids (one request at a time),
   and the peak memory of sampling;
3. checks bytes on the device: the same request twice gives the same bytes, and an image
   rendered alone has the pixels it has inside a 64-image grid (fixed-shape passes); it also
   says whether the device's bytes equal the CPU's (not promised: kernels differ);
4. unless `--no-http`: registers the export in a fresh data dir and serves it with
   `python -m ganserve api` (which renders on the CPU: the API process has no device setting),
   then measures one PNG and 64-grids over HTTP at concurrency 8 and checks the served bytes
   equal `sample_png` on the CPU.

Prints one line per measurement and a summary table; exits non-zero if a determinism check
fails. Every process it starts is stopped by process group at the end.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from ganserve.gan.checkpoint import export_generator, load_generator
from ganserve.gan.config import TrainConfig
from ganserve.gan.models import Generator
from ganserve.gan.sample import sample_png
from ganserve.gan.train import train
from train_speed import mnist_sized_digits

GRID = 64  # images of a grid request
BENCH = Path(__file__).resolve().parent


@dataclass
class Row:
    """The measurements of one (architecture, precision)."""

    arch: str
    precision: str
    steps_per_s: float = float("nan")
    train_mib: float = float("nan")  # peak device memory while training
    png_per_s: float = float("nan")  # one-image requests per second, in-process
    grid_images_per_s: float = float("nan")  # images per second in 64-image grids
    sample_mib: float = float("nan")  # peak device memory while sampling
    http: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    skipped: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="torch device: cuda, cuda:1, cpu")
    parser.add_argument("--steps", type=int, default=500, help="training steps per model")
    parser.add_argument("--archs", nargs="+", default=["mlp", "dcgan"], choices=["mlp", "dcgan"])
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per sampling measurement")
    parser.add_argument("--no-http", action="store_true", help="skip serving over HTTP")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.seconds <= 0:
        parser.error("--steps must be >= 1 and --seconds > 0")
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return float("nan")


def rate(work: Callable[[int], object], seconds: float, device: torch.device) -> float:
    """Calls/s of work(i) in a plain loop, after a warm-up, the device synchronised."""
    for i in range(5):
        work(i)
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work(count)
        count += 1
    synchronize(device)
    return count / (time.perf_counter() - start)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def check_bytes(generator: Generator, device: torch.device, row: Row) -> None:
    """Same request, same bytes; alone == inside a grid; device bytes vs CPU bytes (info)."""
    seeds = range(1000, 1000 + GRID)
    first = sample_png(generator, seeds, device=device)
    row.checks["same request, same bytes"] = first == sample_png(generator, seeds, device=device)
    grid = pixels(first)  # (8*29+1, 8*29+1): cell k at 1 + 29*(k // 8), 1 + 29*(k % 8)
    alone_ok = True
    for k in (0, 9, 63):
        alone = pixels(sample_png(generator, [seeds[k]], device=device))
        top, left = 1 + 29 * (k // 8), 1 + 29 * (k % 8)
        cell = grid[top : top + 28, left : left + 28]
        alone_ok &= alone.shape == cell.shape and bool(np.array_equal(alone, cell))
    row.checks["alone == in a 64-grid"] = alone_ok
    cpu = load_cpu_copy(generator)
    row.checks["(info) device bytes == CPU bytes"] = first == sample_png(cpu, seeds)


def load_cpu_copy(generator: Generator) -> Generator:
    copy = Generator(generator.spec)
    copy.load_state_dict({k: v.detach().cpu() for k, v in generator.state_dict().items()})
    return copy.eval().requires_grad_(False)


def run_one(
    arch: str, precision: str, args: argparse.Namespace, device: torch.device, root: Path
) -> tuple[Row, Path | None]:
    row = Row(arch, precision)
    if precision == "bf16" and device.type != "cuda":
        row.skipped = "bf16 autocast is CUDA-only"
        return row, None
    config = TrainConfig(
        architecture=arch,
        precision=precision,
        device=str(device),
        steps=args.steps,
        checkpoint_every=args.steps,
        sample_every=args.steps,
    )
    dataset = mnist_sized_digits()
    reset_peak(device)
    synchronize(device)
    start = time.perf_counter()
    result = train(config, dataset, root / f"run-{arch}-{precision}")
    synchronize(device)
    row.steps_per_s = args.steps / (time.perf_counter() - start)
    row.train_mib = peak_mib(device)
    folder = root / f"export-{arch}-{precision}"
    export_generator(result.state, folder, dataset.name)
    generator = load_generator(folder, device).generator
    reset_peak(device)
    row.png_per_s = rate(lambda i: sample_png(generator, [i], device=device), args.seconds, device)
    grids = rate(
        lambda i: sample_png(generator, range(i * GRID, (i + 1) * GRID), device=device),
        args.seconds,
        device,
    )
    row.grid_images_per_s = grids * GRID
    row.sample_mib = peak_mib(device)
    check_bytes(generator, device, row)
    print(
        f"{arch} {precision}: {row.steps_per_s:.1f} steps/s (peak {row.train_mib:.0f} MiB); "
        f"one PNG {row.png_per_s:.0f}/s, grids {grids:.1f}/s = {row.grid_images_per_s:.0f} "
        f"images/s (peak {row.sample_mib:.0f} MiB); checks {row.checks}",
        flush=True,
    )
    return row, folder


def serve_over_http(rows: list[tuple[Row, Path]], args: argparse.Namespace, root: Path) -> None:
    """Registers each export, serves them with `ganserve api`, loads it at c=8, checks bytes."""
    from ganserve.runtime.embedded_redis import EmbeddedRedis
    from ganserve.settings import Settings
    from ganserve.store import Store, registry
    from sampling import Servers, get_request, measure

    settings = Settings(data_dir=root / "data")
    settings.data_dir.mkdir(parents=True)
    store = Store.from_settings(settings)
    names: list[tuple[Row, str]] = []
    try:
        with store.session() as session:
            for row, folder in rows:
                name = f"gpu-{row.arch}-{row.precision}"
                target = store.artifacts.root / "models" / name / "v1"
                shutil.copytree(folder, target)
                description = load_generator(folder).description
                registry.register_version(
                    session, name, None, args.steps, store.artifacts.relative(target), description
                )
                names.append((row, name))
    finally:
        store.close()
    (root / "logs").mkdir()
    servers = Servers(root / "logs")
    broker = EmbeddedRedis(root / "redis", persistent=False)
    try:
        broker.start()
        env = {"GANSERVE_DATA_DIR": str(settings.data_dir), "REDIS_URL": broker.url}
        port = servers.start("ganserve", [sys.executable, "-m", "ganserve", "api"], env)
        for row, name in names:
            path = f"/v1/models/{name}/samples.png"
            served = httpx.get(f"http://127.0.0.1:{port}{path}?seed=1000&n={GRID}", timeout=60)
            cpu = load_generator(root / f"export-{row.arch}-{row.precision}").generator
            expected = sample_png(cpu, range(1000, 1000 + GRID))
            row.checks["served bytes == CPU sample_png"] = served.content == expected
            one = measure("png", port, get_request(path, 1), 8, args.seconds)
            grid = measure("grid", port, get_request(f"{path}?n={GRID}", GRID), 8, args.seconds)
            row.http = {"png_per_s": one.rate, "grid_images_per_s": grid.rate * GRID}
            print(
                f"{name} over HTTP (CPU rendering), c=8: one PNG {one.rate:.0f} req/s, "
                f"grids {grid.rate:.1f} req/s; checks {row.checks}",
                flush=True,
            )
    finally:
        servers.stop()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu for a dry run", file=sys.stderr)
        return 2
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({card}); torch {torch.__version__}; steps {args.steps}")
    root = Path(tempfile.mkdtemp(prefix="ganserve-gpu-"))
    rows: list[Row] = []
    served: list[tuple[Row, Path]] = []
    try:
        for arch in args.archs:
            for precision in args.precisions:
                row, folder = run_one(arch, precision, args, device, root)
                rows.append(row)
                if folder is not None:
                    served.append((row, folder))
        if served and not args.no_http:
            serve_over_http(served, args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        f"{'arch':<6}{'prec':<6}{'steps/s':>9}{'train MiB':>10}{'PNG/s':>8}{'grid img/s':>11}"
        f"{'sample MiB':>11}{'HTTP PNG/s':>11}{'HTTP grid img/s':>16}"
    )
    failed = False
    for row in rows:
        if row.skipped:
            print(f"{row.arch:<6}{row.precision:<6}  skipped: {row.skipped}")
            continue
        print(
            f"{row.arch:<6}{row.precision:<6}{row.steps_per_s:>9.1f}{row.train_mib:>10.0f}"
            f"{row.png_per_s:>8.0f}{row.grid_images_per_s:>11.0f}{row.sample_mib:>11.0f}"
            f"{row.http.get('png_per_s', float('nan')):>11.0f}"
            f"{row.http.get('grid_images_per_s', float('nan')):>16.0f}"
        )
        for name, ok in row.checks.items():
            print(f"    {name}: {'yes' if ok else 'NO'}")
            failed |= not ok and not name.startswith("(info)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
