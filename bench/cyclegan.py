"""CycleGAN on the built-in pair (digits <-> digits on colour): quality reached in a time
budget, and the engine's step rate against a plain PyTorch CycleGAN loop of the same networks.

    nice -n 10 python bench/cyclegan.py --minutes 20

1. Speed: rounds alternate the engine (`train_cyclegan`, with EMA, NaN checks, pools and
   one checkpoint per round) and a plain loop as the reference implementation writes it
   (python-list image pools, default Adam, both D losses from separate forwards, .item()
   every 10 steps), both on the same networks, batches and seeds.
2. Quality: the engine trains for --minutes of wall time (aborted at a step boundary, as a
   cancelled job would be), then the EMA generators are evaluated on held-out images of both
   domains: the share of translations that keep their digit (each domain's evaluation
   classifier), FD of translations vs untranslated inputs, cycle error.
Targets (issue 16): kept >= 90% each way; FD(translations) <= FD(inputs) / 2; engine >= plain.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

from ganserve.gan.classifier import classifier_for
from ganserve.gan.config import TrainConfig
from ganserve.gan.losses import LOSSES
from ganserve.gan.sample import encode_png, make_grid
from ganserve.gan.train import Callbacks, Progress
from ganserve.gan.translation.models import build_translators
from ganserve.gan.translation.pairs import DomainPair, load_pair
from ganserve.gan.translation.quality import TranslationEvaluator
from ganserve.gan.translation.train import (
    CycleOptions,
    preview_inputs,
    spec_for,
    train_cyclegan,
)
from ganserve.gan.translation.translate import translation_grid


def plain_loop(pair: DomainPair, options: CycleOptions, batch_size: int, steps: int) -> float:
    """Steps/s of the tutorial CycleGAN loop on the same networks."""
    torch.manual_seed(0)
    g_ab, g_ba, d_a, d_b = build_translators(spec_for(pair, options))
    opt_g = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], 2e-4, betas=(0.5, 0.999))
    a_all, b_all = pair.a.scaled(), pair.b.scaled()
    pools: list[list[torch.Tensor]] = [[], []]
    loss = LOSSES["lsgan"]

    def query(pool: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images:
            if len(pool) < options.pool_size:
                pool.append(image)
                out.append(image)
            elif random.random() > 0.5:
                k = random.randrange(len(pool))
                out.append(pool[k].clone())
                pool[k] = image
            else:
                out.append(image)
        return torch.stack(out)

    start = time.perf_counter()
    for step in range(steps):
        a = a_all[torch.randint(len(a_all), (batch_size,))]
        b = b_all[torch.randint(len(b_all), (batch_size,))]
        fake_b, fake_a = g_ab(a), g_ba(b)
        loss_g = (
            loss.g_loss(d_b(fake_b)) + loss.g_loss(d_a(fake_a))
            + 10.0 * (F.l1_loss(g_ba(fake_b), a) + F.l1_loss(g_ab(fake_a), b))
            + 5.0 * (F.l1_loss(g_ab(b), b) + F.l1_loss(g_ba(a), a))
        )  # fmt: skip
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        pooled_a, pooled_b = query(pools[0], fake_a.detach()), query(pools[1], fake_b.detach())
        loss_d = loss.d_loss(d_a(a), d_a(pooled_a)) + loss.d_loss(d_b(b), d_b(pooled_b))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        if step % 10 == 0:
            loss_g.item(), loss_d.item()
    return steps / (time.perf_counter() - start)


def engine_rate(pair: DomainPair, config: TrainConfig, options: CycleOptions, steps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        train_cyclegan(config.replace(steps=steps, checkpoint_every=steps), options, pair,
                       Path(folder))  # fmt: skip
        return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall time")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--speed-steps", type=int, default=40, help="steps per speed round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--grid", type=Path, default=Path("cyclegan-grid.png"))
    parser.add_argument("--speed-only", action="store_true", help="skip the quality run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    pair = load_pair("digits", None)
    options = CycleOptions()
    spec = spec_for(pair, options)
    config = TrainConfig(
        steps=1_000_000, batch_size=args.batch_size, device="cpu", eval_every=0,
        checkpoint_every=1000, sample_every=1_000_000,
    )  # fmt: skip
    print(f"pair: {pair.a.name} <-> {pair.b.name}, {pair.channels}x{spec.image_size}px, "
          f"{len(pair.a)} + {len(pair.b)} images; G width {spec.width}, {spec.blocks} blocks, "
          f"D width {spec.d_width}, {spec.d_layers} layers; batch {args.batch_size}")  # fmt: skip
    sys.stdout.flush()

    engine_rate(pair, config, options, 2)  # warm-up: first-call costs (lazy imports, caches)
    plain_loop(pair, options, args.batch_size, 2)
    engine, plain = [], []
    for r in range(args.rounds):
        engine.append(engine_rate(pair, config, options, args.speed_steps))
        plain.append(plain_loop(pair, options, args.batch_size, args.speed_steps))
        print(f"round {r + 1}: engine {engine[-1]:.2f} steps/s, plain {plain[-1]:.2f} steps/s")
        sys.stdout.flush()
    ratio = statistics.median(engine) / statistics.median(plain)
    print(f"median: engine {statistics.median(engine):.2f} steps/s, plain loop "
          f"{statistics.median(plain):.2f} steps/s, ratio {ratio:.2f}x")  # fmt: skip

    if args.speed_only:
        return
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        classifier_a = classifier_for(pair.a, Path(cache))
        classifier_b = classifier_for(pair.b, Path(cache))
    print(f"classifiers: A {classifier_a.accuracy:.1%}, B {classifier_b.accuracy:.1%} held-out "
          f"accuracy ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    evaluator = TranslationEvaluator(pair, classifier_a, classifier_b, samples=args.eval_samples)

    deadline = time.monotonic() + args.minutes * 60
    last: list[Progress] = []

    def on_progress(p: Progress) -> None:
        last.append(p)
        if p.step % 500 == 0:
            losses = ", ".join(f"{k} {v:.3f}" for k, v in p.losses.items())
            print(f"step {p.step}: {losses}, {p.steps_per_sec:.2f} steps/s")
            sys.stdout.flush()

    with tempfile.TemporaryDirectory() as run:
        callbacks = Callbacks(progress=on_progress, abort=lambda: time.monotonic() > deadline)
        result = train_cyclegan(config, options, pair, Path(run), callbacks)
    state = result.state
    print(f"trained {state.step} steps ({state.step * args.batch_size} images per domain) in "
          f"{args.minutes:g} min")  # fmt: skip
    report = evaluator.evaluate(state.g_ab_ema, state.g_ba_ema)
    for name, d in (("a2b", report.a2b), ("b2a", report.b2a)):
        print(f"{name}: digit kept {d.kept:.1%}, FD translations {d.fd:.2f} vs inputs "
              f"{d.fd_input:.2f} (ratio {d.fd / d.fd_input:.2f}), cycle L1 {d.cycle:.3f}, "
              f"spread {d.spread:.2f}")  # fmt: skip
    ok_kept = min(report.a2b.kept, report.b2a.kept) >= 0.9
    ok_fd = all(d.fd <= d.fd_input / 2 for d in (report.a2b, report.b2a))
    print(
        f"targets: kept >= 90% each way {'MET' if ok_kept else 'NOT MET'}; FD <= half "
        f"{'MET' if ok_fd else 'NOT MET'}; engine >= plain {'MET' if ratio >= 1 else 'NOT MET'}"
    )
    real_a, real_b = preview_inputs(pair, 0)
    grid = translation_grid(state.g_ab_ema, state.g_ba_ema, real_a, real_b)
    args.grid.write_bytes(encode_png(make_grid(grid, nrow=8)))
    print(f"translation grid (rows: A, G(A), F(G(A)), B, F(B), G(F(B))): {args.grid}")


if __name__ == "__main__":
    main()
