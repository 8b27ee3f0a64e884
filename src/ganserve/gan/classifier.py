"""The feature extractor of the offline quality metrics (DESIGN §9): a small CNN classifier
trained on the job's own labelled dataset.

Read top to bottom: the network, its training, saving and loading, and the cache the worker
uses (`classifier_for`). Its penultimate layer gives the features in which Fréchet distance
and KID are measured; its predictions give class coverage and conditional accuracy.

- One architecture for every dataset: square images of 1 or 3 channels, 8..64 px. Two
  stride-2 convolutions and an adaptive average pool make the feature size independent of
  the image size.
- Deterministic on the CPU for a seed and a thread count (torch's conv kernels split work
  by thread): weights and batch order come from seeded streams.
- Saved as `classifier.safetensors` (tensors only) + `classifier.json` (what rebuilds the
  network, the training recipe, the dataset hash, held-out accuracy and the sha256 of the
  tensors file), written atomically, JSON last. Loading verifies the hash and never
  unpickles anything. The "extractor identity" stored with every metric value is the first
  16 hex digits of that sha256: two evaluations are comparable when their identities match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ganserve.gan.bundle import read_bundle, write_bundle
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import CheckpointError, ConfigError, DatasetError

log = logging.getLogger(__name__)

CLASSIFIER_FORMAT = "ganserve-classifier"
CLASSIFIER_FORMAT_VERSION = 1
CLASSIFIER_NAME = "classifier"
CLASSIFIER_WEIGHTS = f"{CLASSIFIER_NAME}.safetensors"
CLASSIFIER_DESCRIPTION = f"{CLASSIFIER_NAME}.json"
IDENTITY_DIGITS = 16  # hex digits of the weights' sha256 kept as the extractor identity

FEATURE_DIM = 128  # width of the penultimate layer: the space FD and KID are measured in
WIDTH = 32  # channels of the first convolution; doubled by each stride-2 convolution
POOLED = 2  # the last feature map is average-pooled to POOLED x POOLED, whatever the size
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 64

HELD_OUT_FRACTION = 0.2  # the classifier's held-out split: dataset.split(0.2, seed)
DEFAULT_BATCH_SIZE = 128
DEFAULT_EPOCHS = 10  # default steps: this many passes over the training split ...
MIN_DEFAULT_STEPS, MAX_DEFAULT_STEPS = 200, 3000  # ... clamped to this range
LEARNING_RATE = 2e-3  # Adam, betas (0.9, 0.999)
WEIGHT_DECAY = 1e-4
INFERENCE_CHUNK = 512  # images per forward pass when extracting features
PROGRESS_EVERY = 25  # training steps between calls of a progress callback

# progress(step, total): called while the classifier trains (it can take a while, once)
ProgressFn = Callable[[int, int], None]


# ----------------------------------------------------------------------------- network


def _conv_block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    # (B, c_in, s, s) -> (B, c_out, s / stride, s / stride)
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class Classifier(nn.Module):
    """(B, C, S, S) images in [-1, 1] -> (B, FEATURE_DIM) features -> (B, num_classes) logits."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.channels, self.num_classes = channels, num_classes
        self.body = nn.Sequential(
            *_conv_block(channels, WIDTH, 1),  # (B, 32, S, S)
            *_conv_block(WIDTH, 2 * WIDTH, 2),  # (B, 64, S/2, S/2)
            *_conv_block(2 * WIDTH, 4 * WIDTH, 2),  # (B, 128, S/4, S/4)
            nn.AdaptiveAvgPool2d(POOLED),  # (B, 128, 2, 2)
            nn.Flatten(),  # (B, 512)
            nn.Linear(4 * WIDTH * POOLED * POOLED, FEATURE_DIM),
            nn.ReLU(inplace=True),  # (B, FEATURE_DIM): the penultimate layer
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out  # (B, FEATURE_DIM)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


# ----------------------------------------------------------------------------- trained form


@dataclass(frozen=True)
class Recipe:
    """How a classifier was trained; part of the cache key (a different recipe retrains)."""

    steps: int  # optimizer steps
    batch_size: int  # images per step
    seed: int  # seeds the weights, the batch order and the held-out split
    held_out_fraction: float = HELD_OUT_FRACTION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class TrainedClassifier:
    """A classifier in eval mode with what identifies it and how good it is."""

    model: Classifier  # eval mode, no gradients
    identity: str  # first IDENTITY_DIGITS hex digits of the sha256 of its safetensors bytes
    dataset_hash: str  # content_hash() of the whole dataset it was made for
    accuracy: float  # top-1 accuracy on the held-out split
    image_shape: tuple[int, int, int]  # (C, H, W) of the images it takes
    recipe: Recipe

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def held_out(self, dataset: ImageDataset) -> ImageDataset:
        """The held-out split of `dataset` this classifier never trained on."""
        return dataset.split(self.recipe.held_out_fraction, self.recipe.seed)[1]

    def embed(
        self, images: torch.Tensor, chunk: int = INFERENCE_CHUNK
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) uint8 images -> ((N, FEATURE_DIM) float64 features, (N,) predictions).

        Both on the CPU; computed in chunks on the classifier's device. The prediction is the
        arg-max class whatever the confidence: metrics.recognise decides what counts.
        """
        features, predictions, _ = self.classify(images, chunk)
        return features, predictions

    def classify(
        self, images: torch.Tensor, chunk: int = INFERENCE_CHUNK
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As `embed`, plus the (N,) float64 softmax probability of each predicted class."""
        shape_ok = images.ndim == 4 and tuple(images.shape[1:]) == self.image_shape
        if images.dtype != torch.uint8 or not shape_ok or len(images) == 0:
            channels, size, _ = self.image_shape
            raise ConfigError(
                "images",
                f"the classifier takes uint8 images of shape (N, {channels}, {size}, {size}) "
                "with N >= 1, "
                f"got {images.dtype} {tuple(images.shape)}",
            )
        features: list[torch.Tensor] = []
        predictions: list[torch.Tensor] = []
        confidences: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(images), chunk):
                x = _scale(images[start : start + chunk].to(self.device))  # (B, C, H, W)
                h = self.model.features(x)  # (B, F)
                features.append(h.double().cpu())
                top = self.model.head(h).double().softmax(dim=1).max(dim=1)  # (B,), (B,)
                predictions.append(top.indices.cpu())
                confidences.append(top.values.cpu())
        return torch.cat(features), torch.cat(predictions), torch.cat(confidences)

    def to(self, device: torch.device | str) -> TrainedClassifier:
        self.model.to(device)
        return self


def _scale(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float().div_(127.5).sub_(1.0)  # uint8 -> [-1, 1], as ImageDataset.scaled


def _weights_bytes(model: Classifier) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return safetensors.torch.save(tensors)


# ----------------------------------------------------------------------------- training


def default_steps(train_size: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """DEFAULT_EPOCHS passes over the training split, clamped to 200..3000 steps."""
    steps = math.ceil(DEFAULT_EPOCHS * train_size / batch_size)
    return max(MIN_DEFAULT_STEPS, min(MAX_DEFAULT_STEPS, steps))


def _check_trainable(dataset: ImageDataset) -> None:
    if dataset.num_classes < 2:
        raise DatasetError(
            f"dataset {dataset.name!r} has no class labels; the quality classifier needs at "
            "least 2 classes (upload one folder per class)"
        )
    if not MIN_IMAGE_SIZE <= dataset.image_size <= MAX_IMAGE_SIZE:
        raise DatasetError(
            f"dataset {dataset.name!r} has {dataset.image_size} px images; the quality "
            f"classifier takes {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} px"
        )


def accuracy(model: Classifier, dataset: ImageDataset, device: torch.device) -> float:
    """Top-1 accuracy of `model` (in eval mode) on `dataset`."""
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(dataset), INFERENCE_CHUNK):
            x = _scale(dataset.images[start : start + INFERENCE_CHUNK].to(device))
            predicted = model.logits(x).argmax(dim=1).cpu()
            correct += int((predicted == dataset.labels[start : start + INFERENCE_CHUNK]).sum())
    return correct / len(dataset)


def train_classifier(
    train: ImageDataset,
    held_out: ImageDataset,
    *,
    steps: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dataset_hash: str | None = None,
    held_out_fraction: float = HELD_OUT_FRACTION,
    progress: ProgressFn | None = None,
) -> TrainedClassifier:
    """Train on `train`, measure top-1 accuracy on `held_out`; the result is in eval mode.

    `dataset_hash` names the dataset the two splits came from (default: `train`'s hash);
    `held_out_fraction` is recorded so `TrainedClassifier.held_out` can redo the split.
    """
    _check_trainable(train)
    if held_out.image_shape != train.image_shape or held_out.class_names != train.class_names:
        raise DatasetError("the held-out split must have the training split's shape and classes")
    if steps < 1 or batch_size < 1:
        raise ConfigError(
            "steps", f"steps and batch_size must be positive, got {steps}, {batch_size}"
        )
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(train.channels, train.num_classes)
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    images, labels = train.images.to(device), train.labels.to(device)  # (N, C, H, W) uint8, (N,)
    order_rng = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(train))
    per_epoch = len(train) // batch_size
    order = torch.empty(0, dtype=torch.long)
    for step in range(steps):
        offset = step % per_epoch
        if offset == 0:  # a fresh shuffle each epoch, from the seeded stream
            order = torch.randperm(len(train), generator=order_rng).to(device)
        rows = order[offset * batch_size : (offset + 1) * batch_size]
        x = _scale(images.index_select(0, rows))  # (B, C, H, W)
        loss = F.cross_entropy(model.logits(x), labels.index_select(0, rows))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None and ((step + 1) % PROGRESS_EVERY == 0 or step + 1 == steps):
            progress(step + 1, steps)
    model.eval().requires_grad_(False)
    held_out_accuracy = accuracy(model, held_out, device)
    weights = _weights_bytes(model)
    return TrainedClassifier(
        model=model,
        identity=hashlib.sha256(weights).hexdigest()[:IDENTITY_DIGITS],
        dataset_hash=dataset_hash if dataset_hash is not None else train.content_hash(),
        accuracy=held_out_accuracy,
        image_shape=train.image_shape,
        recipe=Recipe(steps, batch_size, seed, held_out_fraction),
    )


def fit_classifier(
    dataset: ImageDataset,
    *,
    steps: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> TrainedClassifier:
    """Split `dataset` (HELD_OUT_FRACTION, seed) and train on the kept part."""
    _check_trainable(dataset)
    train, held_out = dataset.split(HELD_OUT_FRACTION, seed)
    return train_classifier(
        train,
        held_out,
        steps=default_steps(len(train), batch_size) if steps is None else steps,
        batch_size=batch_size,
        seed=seed,
        device=device,
        dataset_hash=dataset.content_hash(),
        progress=progress,
    )


# ----------------------------------------------------------------------------- files


def save_classifier(classifier: TrainedClassifier, folder: Path) -> dict[str, Any]:
    """Write safetensors + JSON atomically (JSON last: its presence marks a complete save)."""
    weights = _weights_bytes(classifier.model)
    if hashlib.sha256(weights).hexdigest()[:IDENTITY_DIGITS] != classifier.identity:
        raise CheckpointError("the classifier's weights changed after training; refusing to save")
    return write_bundle(
        folder,
        CLASSIFIER_NAME,
        weights,
        {
            "format": CLASSIFIER_FORMAT,
            "format_version": CLASSIFIER_FORMAT_VERSION,
            "channels": classifier.image_shape[0],
            "image_size": classifier.image_shape[1],
            "num_classes": classifier.num_classes,
            "feature_dim": FEATURE_DIM,
            "dataset_hash": classifier.dataset_hash,
            "accuracy": classifier.accuracy,
            "recipe": classifier.recipe.to_dict(),
            "identity": classifier.identity,
        },
    )


def load_classifier(folder: Path, device: torch.device | str = "cpu") -> TrainedClassifier:
    """Rebuild a saved classifier from JSON + safetensors; verifies the sha256 first."""
    description, tensors = read_bundle(
        folder, CLASSIFIER_NAME, kind="classifier", fmt=CLASSIFIER_FORMAT,
        version=CLASSIFIER_FORMAT_VERSION,
    )  # fmt: skip
    try:
        if description["feature_dim"] != FEATURE_DIM:
            raise ValueError(f"feature_dim {description['feature_dim']} != {FEATURE_DIM}")
        channels, size = int(description["channels"]), int(description["image_size"])
        model = Classifier(channels, int(description["num_classes"]))
        model.load_state_dict(tensors, strict=True)
        classifier = TrainedClassifier(
            model=model.to(device).eval().requires_grad_(False),
            identity=str(description["sha256"])[:IDENTITY_DIGITS],
            dataset_hash=str(description["dataset_hash"]),
            accuracy=float(description["accuracy"]),
            image_shape=(channels, size, size),
            recipe=Recipe(**description["recipe"]),
        )
    except Exception as exc:  # wrong shapes, missing keys
        raise CheckpointError(f"cannot rebuild the classifier in {folder}: {exc}") from exc
    return classifier


# ----------------------------------------------------------------------------- cache


def classifier_for(
    dataset: ImageDataset,
    cache_dir: Path,
    device: torch.device | str = "cpu",
    *,
    steps: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> TrainedClassifier:
    """The classifier for `dataset`, from `cache_dir / dataset.content_hash()` or trained now.

    `progress(step, total)` is called while one is trained (never for a cached one).

    A cached classifier is used only when it loads, its hash checks out and it was made for
    this dataset with this recipe; anything else (torn, tampered, foreign, stale) is logged
    and replaced by a freshly trained one. Concurrent callers may both train; they write the
    same bytes for the same recipe on the same device.
    """
    _check_trainable(dataset)
    dataset_hash = dataset.content_hash()
    folder = cache_dir / dataset_hash
    train_size = len(dataset) - len(dataset.split(HELD_OUT_FRACTION, seed)[1])
    wanted = Recipe(
        default_steps(train_size, batch_size) if steps is None else steps,
        min(batch_size, train_size),
        seed,
    )
    if (folder / CLASSIFIER_DESCRIPTION).exists():
        try:
            cached = load_classifier(folder, device)
        except CheckpointError as exc:
            log.warning("retraining the quality classifier: %s", exc)
        else:
            if cached.dataset_hash == dataset_hash and cached.recipe == wanted:
                return cached
            log.info("retraining the quality classifier in %s: made for another recipe", folder)
    classifier = fit_classifier(
        dataset, steps=wanted.steps, batch_size=batch_size, seed=seed, device=device,
        progress=progress,
    )  # fmt: skip
    save_classifier(classifier, folder)
    return classifier
