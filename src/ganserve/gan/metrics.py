"""Offline quality metrics (DESIGN §9), computed in the features of the dataset's own classifier.

- Fréchet distance (FD): the FID formula in the classifier's penultimate features, not
  Inception's, so its scale is this project's own: compare values measured with the same
  extractor identity only. Computed in float64 with symmetric eigendecompositions (no scipy).
- KID: the unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged
  over random subsets (Bińkowski et al. 2018, as torch-fidelity computes it).
- Class coverage: how many classes get a fair share of the samples, and the KL divergence of
  the predicted-class histogram from uniform: the mode-collapse signal.
- Conditional accuracy: how often the classifier agrees with the class a cGAN was asked for.
- Recognition: the classifier must not vouch for garbage. A sample is recognised only when
  the classifier's softmax confidence is at least MIN_CONFIDENCE and its features lie within
  the reach of the real features (its distance to the nearest real feature is at most the
  FAR_QUANTILE quantile of the real images' own leave-one-out nearest-neighbour distances).
  An unrecognised sample is a miss for conditional accuracy and class coverage.
- Per class (DESIGN §9: collapse hides inside classes): for each class k, the samples of k
  (conditional models: those asked for k; unconditional: those recognised as k) against the
  real images of k: Fréchet distance, diversity (mean pairwise feature distance over the
  real class's: about 1 for a faithful model, 0 for copies of one image), recall (the
  fraction of real images of k whose CLASS_RECALL_K-nearest-neighbour ball among the real
  images of k holds a sample of k: Naeem et al. 2020's "coverage", which an outlier cannot
  inflate) and accuracy (conditional: the fraction of samples asked for k recognised as k).

`Evaluator` ties them together: it draws `samples` images from seeds derived from one seed,
extracts features in chunks, and returns a `QualityReport` that carries its provenance
(extractor identity, dataset hash, sample count, seed). Real features are extracted once per
Evaluator and reused by every evaluation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ganserve.gan.classifier import TrainedClassifier
from ganserve.gan.config import ModelSpec
from ganserve.gan.errors import ConfigError
from ganserve.gan.models import Generator
from ganserve.gan.sample import generate, make_noise
from ganserve.gan.state import EVAL_STREAM, stream_seed

GENERATION_CHUNK = 256  # images per generator forward pass
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # capped at the smaller feature set's size
KID_FULL_KERNEL_ROWS = 4096  # up to this many rows in all, kernels are computed once
KL_EPSILON = 1e-10  # added to every class probability before the KL divergence
FAIR_SHARE = 0.5  # a class is covered with at least this fraction of N / num_classes samples
UNRECOGNISED = -1  # the "class" of a sample the classifier cannot place
MIN_CONFIDENCE = 0.9  # softmax probability of the predicted class below which: unrecognised
# Farther than this quantile of the real images' leave-one-out nearest-neighbour feature
# distances from every real image: unrecognised (1% of real held-out digits are, by design).
FAR_QUANTILE = 0.99
CLASS_RECALL_K = 3  # neighbours that set a real image's ball in the per-class recall
MIN_CLASS_SAMPLES = 2  # fewer samples of a class than this: its FD and diversity are NaN


# ----------------------------------------------------------------------------- distances


def _check_features(name: str, feats: torch.Tensor, minimum: int) -> None:
    if feats.ndim != 2 or feats.shape[0] < minimum:
        raise ConfigError(
            name, f"need a (N, F) feature matrix with N >= {minimum}, got {tuple(feats.shape)}"
        )


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix via eigh; tiny negative eigenvalues become 0."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0.0).sqrt()) @ vectors.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """||mu_a - mu_b||² + Tr(Sa + Sb - 2 (Sa^½ Sb Sa^½)^½) of (N, F) and (M, F) features.

    Tr((Sa^½ Sb Sa^½)^½) equals Tr((Sa Sb)^½) of the usual formula, but the matrix inside is
    symmetric PSD, so eigh gives it stably. Covariances use N - 1, as numpy.cov does.
    """
    _check_features("feats_a", feats_a, 2)
    _check_features("feats_b", feats_b, 2)
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ConfigError(
            "feats_b", f"feature widths differ: {feats_a.shape[1]} and {feats_b.shape[1]}"
        )
    a, b = feats_a.double(), feats_b.double()  # (N, F), (M, F)
    mu_a, mu_b = a.mean(dim=0), b.mean(dim=0)  # (F,)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # (F, F)
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    middle = (middle + middle.T) / 2.0  # symmetric up to rounding; make it exactly so
    trace_root = torch.linalg.eigvalsh(middle).clamp(min=0.0).sqrt().sum()
    distance = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2.0 * trace_root
    return max(float(distance), 0.0)


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # (n, d), (m, d) -> (n, m): (x·y / d + 1)^3
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _subset_sums(
    kernel: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, off_diagonal: bool
) -> torch.Tensor:
    """Sum of kernel[rows_s][:, cols_s] for every subset s at once, via 0/1 indicator rows.

    kernel (n, m); rows (S, k) and cols (S, k) indices -> (S,) sums; with off_diagonal
    (rows == cols, kernel square) the diagonal terms kernel[i, i] are left out.
    """
    w_rows = torch.zeros(len(rows), kernel.shape[0], dtype=kernel.dtype).scatter_(1, rows, 1.0)
    w_cols = torch.zeros(len(cols), kernel.shape[1], dtype=kernel.dtype).scatter_(1, cols, 1.0)
    sums = ((w_rows @ kernel) * w_cols).sum(dim=1)  # (S,)
    if off_diagonal:
        sums = sums - (w_rows * kernel.diagonal()).sum(dim=1)
    return sums


def kernel_inception_distance(
    feats_a: torch.Tensor,
    feats_b: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD² over `subsets` random subsets drawn without replacement.

    Per subset of m rows from each set: (ΣK_xx + ΣK_yy) / (m(m-1)) over off-diagonal terms
    minus 2 ΣK_xy / m². `subset_size` is capped at the smaller set's size; std is the
    population std over subsets. The kernel matrices are computed once for the whole sets
    when they hold at most KID_FULL_KERNEL_ROWS rows together, else once per subset.
    """
    _check_features("feats_a", feats_a, 2)
    _check_features("feats_b", feats_b, 2)
    if subsets < 1:
        raise ConfigError("subsets", f"must be at least 1, got {subsets}")
    m = min(subset_size, len(feats_a), len(feats_b))
    if m < 2:
        raise ConfigError("subset_size", f"must be at least 2, got {subset_size}")
    a, b = feats_a.double().cpu(), feats_b.double().cpu()  # (N, F), (M, F)
    rng = torch.Generator().manual_seed(seed)
    rows_a = torch.stack([torch.randperm(len(a), generator=rng)[:m] for _ in range(subsets)])
    rows_b = torch.stack([torch.randperm(len(b), generator=rng)[:m] for _ in range(subsets)])
    if len(a) + len(b) <= KID_FULL_KERNEL_ROWS:
        sum_xx = _subset_sums(_polynomial_kernel(a, a), rows_a, rows_a, off_diagonal=True)
        sum_yy = _subset_sums(_polynomial_kernel(b, b), rows_b, rows_b, off_diagonal=True)
        sum_xy = _subset_sums(_polynomial_kernel(a, b), rows_a, rows_b, off_diagonal=False)
    else:
        sums = []
        for ra, rb in zip(rows_a, rows_b, strict=True):
            x, y = a[ra], b[rb]  # (m, F)
            k_xx, k_yy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
            sums.append(
                torch.stack(
                    [
                        k_xx.sum() - k_xx.diagonal().sum(),
                        k_yy.sum() - k_yy.diagonal().sum(),
                        _polynomial_kernel(x, y).sum(),
                    ]
                )
            )
        sum_xx, sum_yy, sum_xy = torch.stack(sums).T  # (S,) each
    values = (sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * sum_xy / (m * m)  # (S,)
    return float(values.mean()), float(values.std(correction=0))


# ----------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class Coverage:
    covered: int  # classes with at least fair_share * N / num_classes samples
    kl_from_uniform: float  # KL(p || uniform) in nats: 0 when balanced, log(K) for one class
    histogram: list[float]  # p: fraction of samples predicted as each class


def class_coverage(
    predicted: torch.Tensor, num_classes: int, fair_share: float = FAIR_SHARE
) -> Coverage:
    """Coverage of (N,) predicted class indices over `num_classes` classes.

    UNRECOGNISED entries count in N but in no class: a share of garbage lowers every class's.
    """
    if predicted.ndim != 1 or len(predicted) == 0:
        raise ConfigError(
            "predicted", f"need (N,) labels with N >= 1, got {tuple(predicted.shape)}"
        )
    if num_classes < 1:
        raise ConfigError("num_classes", f"must be at least 1, got {num_classes}")
    if bool((predicted < UNRECOGNISED).any()):
        raise ConfigError("predicted", f"labels must lie in 0..{num_classes - 1} or be -1")
    placed = predicted[predicted != UNRECOGNISED].long().cpu()
    counts = torch.bincount(placed, minlength=num_classes).double()  # (K,)
    if len(counts) > num_classes:
        raise ConfigError("predicted", f"labels must lie in 0..{num_classes - 1}")
    n = len(predicted)
    p = counts / n
    covered = int((counts >= fair_share * n / num_classes).sum())
    p_placed = counts / max(float(counts.sum()), 1.0)  # the KL is over the recognised ones
    smoothed = (p_placed + KL_EPSILON) / (1.0 + num_classes * KL_EPSILON)
    kl = float((smoothed * (smoothed * num_classes).log()).sum())
    return Coverage(covered=covered, kl_from_uniform=max(kl, 0.0), histogram=p.tolist())


def conditional_accuracy(predicted: torch.Tensor, requested: torch.Tensor) -> float:
    """Fraction of samples whose predicted class is the class they were generated for.

    An UNRECOGNISED prediction never equals a requested class: it is a miss.
    """
    if predicted.shape != requested.shape or predicted.ndim != 1 or len(predicted) == 0:
        raise ConfigError(
            "requested",
            f"need two (N,) label vectors with N >= 1, got {tuple(predicted.shape)} and "
            f"{tuple(requested.shape)}",
        )
    return float((predicted.cpu() == requested.cpu()).double().mean())


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # (N, F), (M, F) -> (N, M) Euclidean, computed directly (not via |a|²+|b|²-2ab, whose
    # rounding would give identical images a small nonzero distance)
    return torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")


def nearest_distances(
    feats: torch.Tensor, reference: torch.Tensor, k: int = 1, leave_one_out: bool = False
) -> torch.Tensor:
    """(N,) distance of each of (N, F) feats to its k-th nearest row of (M, F) reference.

    With leave_one_out, feats is reference itself and a row is not its own neighbour.
    """
    distances = _distances(feats, reference)  # (N, M)
    if leave_one_out:
        distances.fill_diagonal_(math.inf)
    k = min(k, distances.shape[1] - (1 if leave_one_out else 0))
    return distances.topk(k, dim=1, largest=False).values[:, -1]


@dataclass(frozen=True)
class Recogniser:
    """Decides which samples the classifier may vouch for (see the module docstring)."""

    reference: torch.Tensor  # (M, F) real features
    max_distance: float  # FAR_QUANTILE of the reference's leave-one-out NN distances
    min_confidence: float = MIN_CONFIDENCE

    @classmethod
    def calibrate(
        cls,
        reference: torch.Tensor,
        quantile: float = FAR_QUANTILE,
        min_confidence: float = MIN_CONFIDENCE,
    ) -> Recogniser:
        _check_features("reference", reference, 2)
        own = nearest_distances(reference, reference, leave_one_out=True)  # (M,)
        return cls(reference.double(), float(own.quantile(quantile)), min_confidence)

    def apply(
        self, features: torch.Tensor, predicted: torch.Tensor, confidence: torch.Tensor
    ) -> torch.Tensor:
        """(N,) predictions with UNRECOGNISED where confidence or distance rules a sample out."""
        far = nearest_distances(features, self.reference) > self.max_distance
        unsure = confidence < self.min_confidence
        return torch.where(far | unsure, UNRECOGNISED, predicted.long())


def mean_pairwise_distance(feats: torch.Tensor) -> float:
    """Mean Euclidean distance over the N(N-1) ordered pairs of distinct rows of (N, F)."""
    n = len(feats)
    if n < 2:
        return math.nan
    return float(_distances(feats, feats).sum() / (n * (n - 1)))


def class_recall(fake: torch.Tensor, real: torch.Tensor, k: int = CLASS_RECALL_K) -> float:
    """Fraction of (M, F) real rows whose k-NN ball among the reals holds a row of fake.

    Naeem et al. 2020's "coverage": copies of one image cover only the balls around it, noise
    far from the reals covers none, and a faithful set covers nearly all.
    """
    if len(fake) == 0 or len(real) < 2:
        return 0.0
    radius = nearest_distances(real, real, k=k, leave_one_out=True)  # (M,)
    nearest_fake = nearest_distances(real, fake)  # (M,)
    return float((nearest_fake <= radius).double().mean())


@dataclass(frozen=True)
class ClassQuality:
    """One class's samples against the real images of that class."""

    label: int  # class index
    name: str  # class name ("3" for digits)
    samples: int  # conditional: asked for this class; unconditional: recognised as it
    frechet_distance: float  # NaN below MIN_CLASS_SAMPLES samples
    diversity: float  # mean pairwise feature distance / the real class's; NaN below 2
    recall: float  # fraction of the real class's images near a sample (class_recall)
    accuracy: float | None  # conditional only: fraction of its samples recognised as it


# Flat metric names of the per-class values: "<prefix>.<class index>", e.g. "class_div.3".
CLASS_METRICS = {
    "class_fd": "frechet_distance",
    "class_div": "diversity",
    "class_recall": "recall",
    "class_acc": "accuracy",
}


def per_class_quality(
    fake: torch.Tensor,
    fake_classes: torch.Tensor,
    predicted: torch.Tensor,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    class_names: tuple[str, ...],
    conditional: bool,
) -> list[ClassQuality]:
    """Per-class metrics of (N, F) sample features against (M, F) real features.

    `fake_classes` (N,) is the class each sample belongs to (asked for, or recognised as,
    with UNRECOGNISED for none); `predicted` (N,) the recognised class (for accuracy).
    """
    results = []
    for label, name in enumerate(class_names):
        mine = fake_classes == label
        f, r = fake[mine], real[real_labels == label]  # (n_k, F), (m_k, F)
        enough = len(f) >= MIN_CLASS_SAMPLES and len(r) >= MIN_CLASS_SAMPLES
        real_spread = mean_pairwise_distance(r)
        diversity = mean_pairwise_distance(f) / real_spread if enough else math.nan
        accuracy = None
        if conditional:
            accuracy = float((predicted[mine] == label).double().mean()) if len(f) else 0.0
        results.append(
            ClassQuality(
                label=label,
                name=name,
                samples=len(f),
                frechet_distance=frechet_distance(f, r) if enough else math.nan,
                diversity=diversity,
                recall=class_recall(f, r),
                accuracy=accuracy,
            )
        )
    return results


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class QualityReport:
    """One evaluation of a generator against held-out real images."""

    frechet_distance: float  # in the classifier's feature space; lower is better
    kid: float  # mean unbiased MMD² over subsets; ~0 for matching distributions
    kid_std: float
    coverage: int  # classes that received a fair share of the samples
    num_classes: int
    kl_uniform: float  # KL(predicted-class histogram || uniform), nats
    conditional_accuracy: float | None  # None for unconditional generators
    num_samples: int  # generated images
    num_real: int  # held-out real images
    seed: int  # sample i uses stream_seed(seed, EVAL_STREAM, i)
    extractor: str  # the classifier's identity
    dataset_hash: str  # content hash of the dataset the classifier was made for
    classifier_accuracy: float  # its held-out accuracy
    seconds: float  # wall time of this evaluation: the cost
    histogram: list[float] = field(default_factory=list)  # fraction recognised as each class
    unrecognised: float = 0.0  # fraction of samples the classifier could not place
    per_class: tuple[ClassQuality, ...] = ()  # one entry per class, in class order

    def worst(self, attribute: str) -> ClassQuality | None:
        """The class with the lowest finite `attribute` (diversity, recall, accuracy)."""
        scored = [c for c in self.per_class if _finite(getattr(c, attribute))]
        return min(scored, key=lambda c: float(getattr(c, attribute))) if scored else None

    def as_metrics(self) -> dict[str, float]:
        """Flat metric values for history, status and events.

        Per class: "class_fd.K", "class_div.K", "class_recall.K" and (conditional)
        "class_acc.K" for class index K; "class_div_min", "class_recall_min" and
        "class_acc_min" are the worst class's. NaN values (a class with fewer than
        MIN_CLASS_SAMPLES samples) are left out.
        """
        values = {
            "fd": self.frechet_distance,
            "kid": self.kid,
            "kid_std": self.kid_std,
            "coverage": float(self.coverage),
            "kl_uniform": self.kl_uniform,
            "unrecognised": self.unrecognised,
            "eval_seconds": self.seconds,
        }
        if self.conditional_accuracy is not None:
            values["cond_acc"] = self.conditional_accuracy
        for quality in self.per_class:
            for prefix, attribute in CLASS_METRICS.items():
                value = getattr(quality, attribute)
                if _finite(value):  # NaN: too few samples of the class to say
                    values[f"{prefix}.{quality.label}"] = float(value)
        for prefix, attribute in (("class_div", "diversity"), ("class_recall", "recall"),
                                  ("class_acc", "accuracy")):  # fmt: skip
            worst = self.worst(attribute)
            if worst is not None:
                values[f"{prefix}_min"] = float(getattr(worst, attribute))
        return values

    def provenance(self) -> dict[str, Any]:
        """What makes the values comparable: store it with them."""
        return {
            "extractor": self.extractor,
            "dataset_hash": self.dataset_hash,
            "num_samples": self.num_samples,
            "num_real": self.num_real,
            "seed": self.seed,
            "classifier_accuracy": self.classifier_accuracy,
            "num_classes": self.num_classes,
        }


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def sample_images(
    generator: Generator,
    spec: ModelSpec,
    samples: int,
    seed: int,
    device: torch.device | str = "cpu",
    chunk: int = GENERATION_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, C, H, W) uint8 samples and, for conditional models, the (N,) requested labels.

    Sample i is drawn from stream_seed(seed, EVAL_STREAM, i) with class i % num_classes, in
    eval mode (G's mode is restored afterwards) and quantized exactly as served images are.
    """
    if samples < 2:
        raise ConfigError("samples", f"must be at least 2, got {samples}")
    images: list[torch.Tensor] = []
    for start in range(0, samples, chunk):
        indices = range(start, min(start + chunk, samples))
        seeds = [stream_seed(seed, EVAL_STREAM, i) for i in indices]
        labels = [i % spec.num_classes for i in indices] if spec.conditional else None
        z, y = make_noise(seeds, spec, None, labels)  # (B, noise_dim), (B,) | None
        images.append(generate(generator, z, y, device).permute(0, 3, 1, 2))  # (B, C, H, W)
    requested = None
    if spec.conditional:
        requested = torch.arange(samples, dtype=torch.long) % spec.num_classes
    return torch.cat(images).contiguous(), requested


class Evaluator:
    """Evaluates generators against one held-out real set with one classifier.

    The real features are extracted on the first evaluation and kept; make one Evaluator per
    training job and call `evaluate` on its schedule.
    """

    def __init__(
        self,
        classifier: TrainedClassifier,
        real_images: torch.Tensor,
        *,
        real_labels: torch.Tensor | None = None,
        samples: int = 1000,
        seed: int = 0,
        device: torch.device | str = "cpu",
        kid_subsets: int = KID_SUBSETS,
        kid_subset_size: int = KID_SUBSET_SIZE,
    ) -> None:
        if real_images.ndim != 4 or len(real_images) < 2:
            raise ConfigError(
                "real_images",
                f"need (N, C, H, W) uint8 with N >= 2, got {tuple(real_images.shape)}",
            )
        if samples < 2:
            raise ConfigError("samples", f"must be at least 2, got {samples}")
        if real_labels is not None and real_labels.shape != (len(real_images),):
            raise ConfigError(
                "real_labels",
                f"need one label per real image ({len(real_images)}), got "
                f"{tuple(real_labels.shape)}",
            )
        self.classifier = classifier.to(device)
        self.real_images = real_images  # (N, C, H, W) uint8
        self._real_labels = real_labels  # (N,); None: the classifier's predictions
        self.samples, self.seed, self.device = samples, seed, torch.device(device)
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self._real_features: torch.Tensor | None = None
        self._recogniser: Recogniser | None = None

    @property
    def real_features(self) -> torch.Tensor:
        """(N, F) float64 classifier features of the real images, computed once."""
        if self._real_features is None:
            features, predicted = self.classifier.embed(self.real_images)
            self._real_features = features
            if self._real_labels is None:
                self._real_labels = predicted
        return self._real_features

    @property
    def real_labels(self) -> torch.Tensor:
        """(N,) class of each real image: as given, else the classifier's prediction."""
        _ = self.real_features
        assert self._real_labels is not None  # set with the features
        return self._real_labels

    @property
    def recogniser(self) -> Recogniser:
        if self._recogniser is None:
            self._recogniser = Recogniser.calibrate(self.real_features)
        return self._recogniser

    def judge(
        self,
        images: torch.Tensor,
        requested: torch.Tensor | None,
        class_names: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor, torch.Tensor, list[ClassQuality]]:
        """(N, C, H, W) uint8 images [+ (N,) asked-for classes] -> their features, recognised
        classes (UNRECOGNISED for garbage) and per-class quality against the real images."""
        features, predicted, confidence = self.classifier.classify(images)  # (N, F), (N,), (N,)
        recognised = self.recogniser.apply(features, predicted, confidence)  # (N,)
        names = class_names or tuple(str(k) for k in range(self.classifier.num_classes))
        per_class = per_class_quality(
            features,
            recognised if requested is None else requested.cpu(),
            recognised,
            self.real_features,
            self.real_labels,
            names,
            conditional=requested is not None,
        )
        return features, recognised, per_class

    def evaluate(self, generator: Generator, spec: ModelSpec | None = None) -> QualityReport:
        """Draw `samples` images from `generator` and measure them against the real set."""
        start = time.perf_counter()
        spec = generator.spec if spec is None else spec
        if spec.image_shape != self.classifier.image_shape:
            raise ConfigError(
                "spec",
                f"the generator makes {spec.image_shape} images but the classifier takes "
                f"{self.classifier.image_shape}",
            )
        if spec.conditional and spec.num_classes != self.classifier.num_classes:
            raise ConfigError(
                "spec",
                f"the generator has {spec.num_classes} classes, the classifier "
                f"{self.classifier.num_classes}",
            )
        images, requested = sample_images(generator, spec, self.samples, self.seed, self.device)
        fake, predicted, per_class = self.judge(images, requested, spec.class_names)
        real = self.real_features  # (M, F)
        kid, kid_std = kernel_inception_distance(
            fake, real, self.kid_subsets, self.kid_subset_size, seed=self.seed
        )
        coverage = class_coverage(predicted, self.classifier.num_classes)
        cond_acc = None if requested is None else conditional_accuracy(predicted, requested)
        return QualityReport(
            frechet_distance=frechet_distance(fake, real),
            kid=kid,
            kid_std=kid_std,
            coverage=coverage.covered,
            num_classes=self.classifier.num_classes,
            kl_uniform=coverage.kl_from_uniform,
            conditional_accuracy=cond_acc,
            num_samples=self.samples,
            num_real=len(self.real_images),
            seed=self.seed,
            extractor=self.classifier.identity,
            dataset_hash=self.classifier.dataset_hash,
            classifier_accuracy=self.classifier.accuracy,
            seconds=time.perf_counter() - start,
            histogram=coverage.histogram,
            unrecognised=float((predicted == UNRECOGNISED).double().mean()),
            per_class=tuple(per_class),
        )


def evaluate(
    generator: Generator,
    spec: ModelSpec,
    classifier: TrainedClassifier,
    real_images: torch.Tensor,
    *,
    real_labels: torch.Tensor | None = None,
    samples: int = 1000,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> QualityReport:
    """One-off evaluation; use an `Evaluator` to reuse the real features across calls."""
    evaluator = Evaluator(
        classifier, real_images, real_labels=real_labels, samples=samples, seed=seed,
        device=device,
    )  # fmt: skip
    return evaluator.evaluate(generator, spec)
