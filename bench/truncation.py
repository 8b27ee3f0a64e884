"""Truncated noise under sampling contracts 1 and 2: issue 14's bulk request, in-process.

    python bench/truncation.py [--n 10000] [--truncation 0.05] [--dims 100 4096] [--threads 1]

For each noise dim, draws the noise of a bulk `{"n": 10000, "truncation": 0.05}` request the
way the API does (`gan.sample.make_noise` over the seeds 0..n-1, in the API's chunks of 256)
under contract 1 (the redraw loop) and contract 2 (one inverse-CDF pass), plus the same seeds
without truncation and, under contract 2, with truncation 0.001 (contract 1 gives up there).
Prints wall and CPU seconds, per seed, the ratio contract 1 / contract 2, and the work budget's
estimate (`service/sampling/limits.noise_work_s`) next to each measurement. `--threads`: torch
threads (the API runs 1, `GANSERVE_TORCH_THREADS`). Contract 1 at dim 4096 takes minutes.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from ganserve.gan.config import ModelSpec
from ganserve.gan.sample import SAMPLE_CHUNK, make_noise
from ganserve.service.sampling.limits import noise_work_s


def draw(spec: ModelSpec, n: int, truncation: float | None) -> tuple[float, float]:
    """(wall s, CPU s) to draw the noise of seeds 0..n-1 in the API's chunks."""
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, n, SAMPLE_CHUNK):
        make_noise(range(start, min(n, start + SAMPLE_CHUNK)), spec, truncation)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="seeds (images) per request")
    parser.add_argument("--truncation", type=float, default=0.05)
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 4096])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} torch thread(s); n={args.n} seeds per request"
    )
    print(f"{'dim':>5} {'contract':>8} {'truncation':>10} {'wall s':>8} {'CPU s':>8} "
          f"{'ms/seed':>8} {'estimate s':>10}")  # fmt: skip
    for dim in args.dims:
        measured: dict[tuple[int, float | None], float] = {}
        for contract, truncation in (
            (2, None), (1, args.truncation), (2, args.truncation), (2, 0.001),
        ):  # fmt: skip
            spec = ModelSpec("mlp", 1, 8, dim, "normal", sampling_contract=contract)
            draw(spec, 16, truncation)  # warm-up: first-call allocations, caches
            wall, cpu = draw(spec, args.n, truncation)
            measured[contract, truncation] = wall
            estimate = noise_work_s(spec, args.n, truncation)
            shown = "off" if truncation is None else f"{truncation:g}"
            print(f"{dim:>5} {contract:>8} {shown:>10} {wall:>8.2f} {cpu:>8.2f} "
                  f"{1000 * wall / args.n:>8.3f} {estimate:>10.2f}")  # fmt: skip
        ratio = measured[1, args.truncation] / measured[2, args.truncation]
        print(f"{dim:>5} contract 1 / contract 2 at truncation {args.truncation:g}: {ratio:.0f}x")


if __name__ == "__main__":
    main()
