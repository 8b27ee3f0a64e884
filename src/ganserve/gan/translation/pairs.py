"""The two domains of a translation model, reconciled to one image shape.

A CycleGAN's generators map (C, S, S) images to (C, S, S) images, and its identity loss feeds
each generator images of its own output domain, so both domains need one channel count and
one size. `reconcile` makes them so, explicitly:

- channels: the larger of the two; a grey domain next to an RGB one is repeated into three
  equal channels (and served translations of it are RGB).
- size: the larger of the two (or `image_size` when given); the smaller domain is resized
  bilinearly. More than MAX_UPSCALE-fold enlargement is refused (a ConfigError naming the
  dataset field), as is a size outside the networks' 8..256 px.

The built-in pair (`dataset: "digits"` with no `dataset_b`) is `digits` <-> `digits-on-colour`
(data.load_digits_on_colour): 8x8 grey digits, enlarged to 32x32 and made RGB, against the
same digits blended over patches of photographs. Works offline; both domains carry labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ganserve.gan.data import ImageDataset, load_dataset, resize_images
from ganserve.gan.errors import ConfigError
from ganserve.gan.translation.models import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

BUILTIN_PAIR = ("digits", "digits-on-colour")
MAX_UPSCALE = 4  # a domain may be enlarged at most 4-fold (digits: 8 -> 32 px)


@dataclass(frozen=True, eq=False)
class DomainPair:
    """Domains A and B with the same (C, S, S) image shape; labels kept as each had them."""

    a: ImageDataset
    b: ImageDataset

    def __post_init__(self) -> None:
        assert self.a.image_shape == self.b.image_shape, "reconcile() the domains first"

    @property
    def channels(self) -> int:
        return self.a.channels

    @property
    def image_size(self) -> int:
        return self.a.image_size

    @property
    def class_names(self) -> tuple[str, ...]:
        """The shared class names when both domains carry the same labels, else ()."""
        same = self.a.class_names == self.b.class_names
        return self.a.class_names if same and self.a.num_classes >= 2 else ()


def _convert(dataset: ImageDataset, channels: int, size: int) -> ImageDataset:
    images = dataset.images  # (N, c, s, s) uint8
    if images.shape[1] != channels:
        images = images.expand(-1, channels, -1, -1)  # grey -> RGB: three equal channels
    if images.shape[2] != size:
        images = resize_images(images, size)
    return ImageDataset(dataset.name, images.contiguous(), dataset.labels, dataset.class_names)


def reconcile(a: ImageDataset, b: ImageDataset, image_size: int | None = None) -> DomainPair:
    """Both domains at one channel count and size (see the module docstring for the rules)."""
    size = max(a.image_size, b.image_size) if image_size is None else image_size
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise ConfigError(
            "image_size", f"translation models take {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} px "
            f"images, got {size} px from datasets {a.name!r} and {b.name!r}",
        )  # fmt: skip
    for field, domain in (("dataset", a), ("dataset_b", b)):
        if size > MAX_UPSCALE * domain.image_size:
            raise ConfigError(
                field, f"{domain.name!r} has {domain.image_size} px images, too small to "
                f"enlarge to the pair's {size} px (at most {MAX_UPSCALE}x); choose datasets "
                "of closer sizes",
            )  # fmt: skip
    channels = max(a.channels, b.channels)
    return DomainPair(_convert(a, channels, size), _convert(b, channels, size))


def load_pair(
    dataset: str, dataset_b: str | None, data_dir: str | Path | None = None
) -> DomainPair:
    """Load and reconcile the two domains; dataset_b may be omitted only for the built-in pair."""
    dataset, dataset_b = pair_names(dataset, dataset_b)
    return reconcile(load_dataset(dataset, data_dir), load_dataset(dataset_b, data_dir))


def pair_names(dataset: str, dataset_b: str | None) -> tuple[str, str]:
    """(A, B) dataset names; dataset_b may be omitted only for the built-in pair."""
    if not dataset_b:
        if dataset != BUILTIN_PAIR[0]:
            raise ConfigError(
                "dataset_b", f"a translation model needs a second domain; give dataset_b "
                f"(only {BUILTIN_PAIR[0]!r} has a built-in partner, {BUILTIN_PAIR[1]!r})",
            )  # fmt: skip
        dataset_b = BUILTIN_PAIR[1]
    if dataset_b == dataset:
        raise ConfigError("dataset_b", f"must name another dataset than dataset ({dataset!r})")
    return dataset, dataset_b


def check_pair_shapes(
    a: tuple[str, int, int, int], b: tuple[str, int, int, int], batch_size: int
) -> None:
    """The checks of `reconcile`, from (name, images, channels, size) alone (no pixels)."""
    size = max(a[3], b[3])
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise ConfigError(
            "dataset", f"translation models take {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} px images, "
            f"got {size} px from datasets {a[0]!r} and {b[0]!r}",
        )  # fmt: skip
    for field, (name, count, _, side) in (("dataset", a), ("dataset_b", b)):
        if size > MAX_UPSCALE * side:
            raise ConfigError(
                field, f"{name!r} has {side} px images, too small to enlarge to the pair's "
                f"{size} px (at most {MAX_UPSCALE}x); choose datasets of closer sizes",
            )  # fmt: skip
        if batch_size > count:
            raise ConfigError(
                "batch_size", f"{batch_size} exceeds the {count} images of {field} {name!r}"
            )


def domain_order(count: int, seed: int) -> torch.Tensor:
    """A seeded permutation of range(count): which real images previews and evaluations use."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))
