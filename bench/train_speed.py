"""Training steps/s of the engine's loop vs a plain PyTorch loop of the same model and losses.

The reference model (MLP GAN, 28x28 inputs, batch 128, bce, Adam 2e-4/(0.5, 0.999)) on the
CPU. Both loops run in the same process, interleaved, so machine noise hits both alike.
The engine runs with progress reporting every 10 steps and checkpoints on its schedule.

    python bench/train_speed.py [--steps 300] [--rounds 3] [--threads N [M ...]]

With several thread counts (e.g. `--threads 1 2`), every round runs the engine and the plain
loop at each count in turn, so one run compares thread counts under the same machine load:
that is how the worker's default (`GANSERVE_WORKER_TORCH_THREADS`) was chosen.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ganserve.gan.config import TrainConfig
from ganserve.gan.data import ImageDataset, load_digits
from ganserve.gan.train import Callbacks, Progress, train


def mnist_sized_digits() -> ImageDataset:
    """The built-in digits upscaled to 28x28: MNIST's shape with no download."""
    digits = load_digits()
    images = F.interpolate(digits.images.float(), size=(28, 28), mode="bilinear")
    return ImageDataset("digits28", images.round().clamp(0, 255).to(torch.uint8),
                        digits.labels, digits.class_names)  # fmt: skip


def plain_loop(dataset: ImageDataset, steps: int, batch_size: int = 128) -> float:
    """The loop one writes from a tutorial: two G forwards per step, default Adam. Steps/s."""
    torch.manual_seed(0)
    g = nn.Sequential(
        nn.Linear(100, 256), nn.LeakyReLU(0.2), nn.BatchNorm1d(256, momentum=0.2, eps=1e-3),
        nn.Linear(256, 512), nn.LeakyReLU(0.2), nn.BatchNorm1d(512, momentum=0.2, eps=1e-3),
        nn.Linear(512, 1024), nn.LeakyReLU(0.2), nn.BatchNorm1d(1024, momentum=0.2, eps=1e-3),
        nn.Linear(1024, 784), nn.Tanh(),
    )  # fmt: skip
    d = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256),
        nn.LeakyReLU(0.2), nn.Linear(256, 1),
    )  # fmt: skip
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = dataset.images.float() / 127.5 - 1
    ones, zeros = torch.ones(batch_size, 1), torch.zeros(batch_size, 1)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(data), (batch_size,))
        real = data[idx]
        fake = g(torch.randn(batch_size, 100))
        loss_d = F.binary_cross_entropy_with_logits(d(real), ones) + \
            F.binary_cross_entropy_with_logits(d(fake.detach()), zeros)  # fmt: skip
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(d(g(torch.randn(batch_size, 100))), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if step % 10 == 0:
            _ = loss_d.item(), loss_g.item()  # the same progress reporting as the engine
    return steps / (time.perf_counter() - start)


def engine_loop(dataset: ImageDataset, steps: int) -> float:
    reports: list[Progress] = []
    config = TrainConfig(steps=steps, device="cpu", checkpoint_every=max(steps // 2, 1))
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        train(config, dataset, Path(run_dir), Callbacks(progress=reports.append))
        elapsed = time.perf_counter() - start
    assert reports and reports[-1].step == steps
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    args = parser.parse_args()
    dataset = mnist_sized_digits()
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    print(f"machine: {machine}, torch {torch.__version__}, threads {args.threads}")
    print(f"steps per round: {args.steps}")
    engine: dict[int, list[float]] = {count: [] for count in args.threads}
    plain: dict[int, list[float]] = {count: [] for count in args.threads}
    for count in args.threads:  # warm-up both paths
        torch.set_num_threads(count)
        engine_loop(dataset, 20)
        plain_loop(dataset, 20)
    for round_ in range(args.rounds):
        for count in args.threads:
            torch.set_num_threads(count)
            engine[count].append(engine_loop(dataset, args.steps))
            plain[count].append(plain_loop(dataset, args.steps))
            print(
                f"round {round_ + 1}, {count} thread(s): engine {engine[count][-1]:.1f} steps/s, "
                f"plain {plain[count][-1]:.1f} steps/s",
                flush=True,
            )
    for count in args.threads:
        e, p = statistics.median(engine[count]), statistics.median(plain[count])
        print(
            f"median, {count} thread(s): engine {e:.1f} steps/s, plain loop {p:.1f} steps/s, "
            f"ratio {e / p:.2f}x"
        )


if __name__ == "__main__":
    main()
