"""Quality reached by `mlp` and `dcgan` on digits after N steps, inside every class too.

Each (architecture, conditional or not) trains once through `gan.train.train` with the
default spec, stopping at every step count given (later segments resume from the
checkpoint, which continues the run exactly). At each stop the served EMA generator is
evaluated on `--samples` images against the classifier's held-out split (DESIGN §9): FD and
KID in the classifier's features, class coverage, conditional accuracy and the unrecognised
share, and per class (issue 13) the worst class's accuracy, the diversity inside each class
relative to the real class's, per-class FD and recall. As a check that does not go through
the classifier at all, `pix` is the per-class per-pixel standard deviation across seeds over
the real class's (the measure issue 13 was reported in; min over classes). For scale, the
same metrics are printed for the real training split and for uniform noise. The cost
columns give one evaluation's seconds and its share of the training time of `--eval-every`
steps. With `--grids DIR`, a PNG per stop shows one row per class, 12 seeds each.

    python bench/quality.py [--steps 2000 5000] [--samples 1000] [--eval-every 500]
                            [--archs mlp dcgan] [--modes plain conditional] [--threads N]
                            [--device cpu] [--seed 0] [--grids DIR]
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from pathlib import Path

import torch

from ganserve.gan.classifier import classifier_for
from ganserve.gan.config import ARCHITECTURES, ModelSpec, TrainConfig
from ganserve.gan.data import ImageDataset, load_digits
from ganserve.gan.metrics import Evaluator, QualityReport, class_coverage, frechet_distance
from ganserve.gan.models import Generator
from ganserve.gan.sample import encode_png, generate, make_grid, make_noise, upscale
from ganserve.gan.train import train

MODES = ("plain", "conditional")
GRID_SEEDS = 12  # images per class row in --grids
SPREAD_SEEDS = 200  # samples per class for the pixel-spread check
DETAILS = (("acc", "accuracy"), ("div", "diversity"), ("fd", "frechet_distance"),
           ("recall", "recall"))  # fmt: skip


def baselines(evaluator: Evaluator, train_split: ImageDataset, samples: int) -> list[str]:
    """FD and coverage of the real training split and of uniform noise, against held-out."""
    lines = []
    rng = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (samples, *train_split.image_shape), generator=rng)
    for name, images in (("real train split", train_split.images), ("uniform noise", noise)):
        features, predicted, _ = evaluator.judge(images.to(torch.uint8), None)
        coverage = class_coverage(predicted, evaluator.classifier.num_classes)
        fd = frechet_distance(features, evaluator.real_features)
        lines.append(
            f"{name:>16}: FD {fd:9.3f}  coverage {coverage.covered:2d}/"
            f"{evaluator.classifier.num_classes}  unrecognised "
            f"{float((predicted < 0).double().mean()):.3f}  ({len(images)} images)"
        )
    return lines


def pixel_spread(generator: Generator, spec: ModelSpec, dataset: ImageDataset) -> list[float]:
    """Per class: mean per-pixel std across SPREAD_SEEDS seeds over the real class's."""
    ratios = []
    for label in range(dataset.num_classes):
        seeds = range(label * SPREAD_SEEDS, (label + 1) * SPREAD_SEEDS)
        z, y = make_noise(list(seeds), spec, None, [label] * SPREAD_SEEDS)
        fake = generate(generator, z, y).float() / 255  # (N, H, W, C)
        real = dataset.images[dataset.labels == label].float() / 255  # (M, C, H, W)
        ratios.append(float(fake.std(dim=0).mean() / real.std(dim=0).mean()))
    return ratios


def save_grid(generator: Generator, spec: ModelSpec, path: Path) -> None:
    """One row per class (conditional) or 10 rows of seeds, GRID_SEEDS images a row, 4x."""
    rows = spec.num_classes if spec.conditional else 10
    seeds = list(range(rows * GRID_SEEDS))
    labels = [i // GRID_SEEDS for i in seeds] if spec.conditional else None
    z, y = make_noise(seeds, spec, None, labels)
    grid = make_grid(generate(generator, z, y), nrow=GRID_SEEDS)
    path.write_bytes(encode_png(upscale(grid, 4)))


def row(
    name: str, stop: int, seconds: float, steps_per_s: float, report: QualityReport, pix: str,
    cost: float,
) -> str:  # fmt: skip
    worst_acc = report.worst("accuracy")
    worst_div = report.worst("diversity")
    fds = [c.frechet_distance for c in report.per_class if math.isfinite(c.frechet_distance)]
    cond = (
        f"{report.conditional_accuracy:6.3f}"
        if report.conditional_accuracy is not None
        else "     -"
    )
    worst = (
        f"{worst_acc.accuracy:.2f} ({worst_acc.name})"
        if worst_acc and worst_acc.accuracy is not None
        else "-"
    )
    divs = [c.diversity for c in report.per_class if math.isfinite(c.diversity)]
    recalls = [c.recall for c in report.per_class]
    return (
        f"{name:>12} {stop:>6} {seconds:>7.0f} {steps_per_s:>6.1f} "
        f"{report.frechet_distance:>7.2f} {report.coverage:>3d}/{report.num_classes:<2d} "
        f"{cond} {report.unrecognised:>6.3f} {worst:>10} "
        f"{(worst_div.diversity if worst_div else math.nan):>5.2f} "
        f"({worst_div.name if worst_div else '-'}) {sum(divs) / max(len(divs), 1):>5.2f} "
        f"{max(fds, default=math.nan):>7.1f} {sum(fds) / max(len(fds), 1):>7.1f} "
        f"{min(recalls, default=math.nan):>5.2f} {pix:>5} {report.seconds:>6.2f} {cost:>6.2f}%"
    )  # fmt: skip


def run(
    architecture: str,
    conditional: bool,
    dataset: ImageDataset,
    evaluator: Evaluator,
    stops: list[int],
    args: argparse.Namespace,
) -> list[str]:
    rows, details = [], []
    name = f"{architecture}{' cond' if conditional else ''}"
    config = TrainConfig(
        architecture=architecture,
        conditional=conditional,
        steps=stops[0],
        device=args.device,
        seed=args.seed,
        checkpoint_every=max(stops),  # only the end of each segment writes one
        sample_every=max(stops),
    )
    train_seconds = 0.0
    with tempfile.TemporaryDirectory() as run_dir:
        done = 0
        for stop in stops:
            start = time.perf_counter()
            result = train(config.replace(steps=stop), dataset, Path(run_dir))
            segment = time.perf_counter() - start
            train_seconds += segment
            steps_per_s = (stop - done) / segment
            done = stop
            generator, spec = result.state.generator_ema, result.state.spec
            report = evaluator.evaluate(generator, spec)
            pix = "-"
            if conditional:
                pix = f"{min(pixel_spread(generator, spec, dataset)):.2f}"
                details.append(f"{name} at {stop} steps, per class:")
                details.append("  class   " + " ".join(f"{c.name:>6}" for c in report.per_class))
                for label, attribute in DETAILS:
                    values = [getattr(c, attribute) for c in report.per_class]
                    details.append(f"  {label:<7} " + " ".join(f"{v:6.2f}" for v in values))
                spread = pixel_spread(generator, spec, dataset)
                details.append("  pix     " + " ".join(f"{v:6.2f}" for v in spread))
            if args.grids:
                tag = f"{architecture}-{'cond' if conditional else 'plain'}-{stop}"
                save_grid(generator, spec, Path(args.grids) / f"{tag}.png")
            cost = 100 * report.seconds * steps_per_s / args.eval_every
            rows.append(row(name, stop, train_seconds, steps_per_s, report, pix, cost))
            print(rows[-1], flush=True)
    return details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--samples", type=int, default=1000, help="generated images per eval")
    parser.add_argument("--eval-every", type=int, default=500, help="steps, for the cost share")
    parser.add_argument("--archs", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grids", default=None, help="folder for one sample grid per stop")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.grids:
        Path(args.grids).mkdir(parents=True, exist_ok=True)
    stops = sorted(set(args.steps))

    print(
        f"machine: {platform.machine()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, device {args.device}"
    )
    dataset = load_digits()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        classifier = classifier_for(dataset, Path(cache), args.device, seed=args.seed)
        classifier_seconds = time.perf_counter() - start
    held_out = classifier.held_out(dataset)
    train_split = dataset.split(classifier.recipe.held_out_fraction, classifier.recipe.seed)[0]
    print(
        f"classifier {classifier.identity}: {classifier.recipe.steps} steps in "
        f"{classifier_seconds:.1f} s, held-out accuracy {classifier.accuracy:.4f} "
        f"on {len(held_out)} images"
    )
    evaluator = Evaluator(
        classifier, held_out.images, real_labels=held_out.labels, samples=args.samples,
        seed=args.seed, device=args.device,
    )  # fmt: skip
    print("baselines against the held-out split:")
    for line in baselines(evaluator, train_split, args.samples):
        print(line)
    print(
        f"\nGAN evaluations ({args.samples} samples; cost share at eval every {args.eval_every}):"
    )
    print(
        f"{'model':>12} {'steps':>6} {'train s':>7} {'st/s':>6} {'FD':>7} {'cover':>6} "
        f"{'c.acc':>6} {'unrec':>6} {'worst acc':>10} {'div min':>11} {'mean':>5} "
        f"{'cFD max':>7} {'mean':>7} {'rec.m':>5} {'pix':>5} {'eval s':>6} {'cost':>7}"
    )
    details: list[str] = []
    for conditional in (mode == "conditional" for mode in args.modes):
        for architecture in args.archs:
            details += run(architecture, conditional, dataset, evaluator, stops, args)
    if details:
        print()
        for line in details:
            print(line)


if __name__ == "__main__":
    main()
