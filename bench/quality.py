"""Quality reached by `mlp` and `dcgan` on digits after N steps, and what evaluating it costs.

Each architecture trains once through `gan.train.train`, stopping at every step count given
(later segments resume from the checkpoint, which continues the run exactly). At each stop
the served EMA generator is evaluated on `--samples` images against the classifier's
held-out split (DESIGN §9): Fréchet distance and KID in the classifier's features, class
coverage and KL from uniform. For scale, the same metrics are printed for the real training
split and for uniform noise. The cost columns give one evaluation's seconds, and the share
of training time that evaluating every `--eval-every` steps would add at the measured speed.

    python bench/quality.py [--steps 2000 10000] [--samples 1000] [--eval-every 500]
                            [--archs mlp dcgan] [--threads N] [--device cpu] [--seed 0]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from ganserve.gan.classifier import classifier_for
from ganserve.gan.config import ARCHITECTURES, TrainConfig
from ganserve.gan.data import ImageDataset, load_digits
from ganserve.gan.metrics import Evaluator, class_coverage, frechet_distance
from ganserve.gan.train import train


def baselines(evaluator: Evaluator, train_split: ImageDataset, samples: int) -> list[str]:
    """FD and coverage of the real training split and of uniform noise, against held-out."""
    lines = []
    rng = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (samples, *train_split.image_shape), generator=rng)
    for name, images in (("real train split", train_split.images), ("uniform noise", noise)):
        features, predicted = evaluator.classifier.embed(images.to(torch.uint8))
        coverage = class_coverage(predicted, evaluator.classifier.num_classes)
        fd = frechet_distance(features, evaluator.real_features)
        lines.append(
            f"{name:>16}: FD {fd:9.3f}  coverage {coverage.covered:2d}/"
            f"{evaluator.classifier.num_classes}  KL {coverage.kl_from_uniform:.3f}  "
            f"({len(images)} images)"
        )
    return lines


def run_architecture(
    architecture: str,
    dataset: ImageDataset,
    evaluator: Evaluator,
    stops: list[int],
    args: argparse.Namespace,
) -> list[str]:
    rows = []
    config = TrainConfig(
        architecture=architecture,
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
            report = evaluator.evaluate(result.state.generator_ema)
            overhead = report.seconds * steps_per_s / args.eval_every
            rows.append(
                f"{architecture:>6} {stop:>7} {train_seconds:>8.1f} {steps_per_s:>8.1f} "
                f"{report.frechet_distance:>9.3f} {report.kid:>9.4f} "
                f"{report.coverage:>5d}/{report.num_classes:<2d} {report.kl_uniform:>6.3f} "
                f"{report.seconds:>7.3f} {100 * overhead:>9.2f}%"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--samples", type=int, default=1000, help="generated images per eval")
    parser.add_argument("--eval-every", type=int, default=500, help="steps, for the cost share")
    parser.add_argument("--archs", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
        classifier, held_out.images, samples=args.samples, seed=args.seed, device=args.device
    )
    print("baselines against the held-out split:")
    for line in baselines(evaluator, train_split, args.samples):
        print(line)
    print(
        f"\nGAN evaluations ({args.samples} samples; cost share at eval every {args.eval_every}):"
    )
    print(
        f"{'arch':>6} {'steps':>7} {'train s':>8} {'steps/s':>8} {'FD':>9} {'KID':>9} "
        f"{'cover':>8} {'KL':>6} {'eval s':>7} {'eval cost':>10}"
    )
    for architecture in args.archs:
        run_architecture(architecture, dataset, evaluator, stops, args)


if __name__ == "__main__":
    main()
