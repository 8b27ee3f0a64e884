"""Datasets: the built-in digits, MNIST / Fashion-MNIST / CIFAR-10 from their standard files,
folders of PNG/JPEG images, and the packed `.npz` form uploads are stored in.

Every loader returns an `ImageDataset` holding uint8 pixels (N, C, H, W); training asks for
`scaled()` batches in [-1, 1]. Nothing is ever downloaded and nothing is ever unpickled:
IDX and CIFAR's binary batches are parsed by hand, `.npz` files are read with
`allow_pickle=False`, and scikit-learn's digits file is located without importing it.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ganserve.gan.errors import DatasetError
from ganserve.gan.files import atomic_writer

BUILTIN_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "digits-on-colour")
IDX_DATASETS = ("mnist", "fashion-mnist")
DEFAULT_DATA_DIR = Path("ganserve-data")  # used when no data dir is given (as in settings)
UPLOAD_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PACKED_FORMAT_VERSION = 1

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

IDX_IMAGES_FILE = "train-images-idx3-ubyte"
IDX_LABELS_FILE = "train-labels-idx1-ubyte"
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
CIFAR10_SUBFOLDER = "cifar-10-batches-bin"
CIFAR10_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_META = "batches.meta.txt"
CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte, then the R, G and B planes, row-major 32x32

IMAGE_FORMATS = ("PNG", "JPEG")  # as Pillow names the decoded format, whatever the extension
MAX_AUTO_IMAGE_SIZE = 64  # the default size of a folder's images is capped here
MAX_IMAGE_SIZE = 256  # an explicit image_size may go up to this
# Pillow modes that carry no colour; everything else becomes RGB.
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")

# Facts about the built-ins that describe_dataset reports without reading the data.
_BUILTIN_FACTS: dict[str, tuple[int, int, tuple[str, ...], int]] = {
    # name: (image_size, channels, class names, size of the standard training set)
    "digits": (8, 1, MNIST_CLASSES, 1797),
    "mnist": (28, 1, MNIST_CLASSES, 60000),
    "fashion-mnist": (28, 1, FASHION_MNIST_CLASSES, 60000),
    "cifar10": (32, 3, CIFAR10_CLASSES, 50000),
    "digits-on-colour": (32, 3, MNIST_CLASSES, 1797),
}


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Labelled images kept as compact uint8 pixels; scaled to [-1, 1] on demand."""

    name: str
    images: torch.Tensor  # (N, C, H, W) uint8 in 0..255, C in {1, 3}, H == W
    labels: torch.Tensor  # (N,) int64 in 0..num_classes-1; all zeros for unlabelled data
    class_names: tuple[str, ...]  # one per class; ("all",) for unlabelled data

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        images, labels, names = self.images, self.labels, self.class_names
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise DatasetError(f"dataset {self.name!r}: images must be a uint8 tensor")
        if images.ndim != 4 or images.shape[0] == 0 or images.shape[1] not in (1, 3):
            raise DatasetError(
                f"dataset {self.name!r}: images must have shape (N, C, H, W) with N >= 1 and "
                f"C = 1 or 3, got {tuple(images.shape)}"
            )
        if images.shape[2] != images.shape[3] or images.shape[2] == 0:
            raise DatasetError(
                f"dataset {self.name!r}: images must be square, got "
                f"{images.shape[2]}x{images.shape[3]}; crop or resize them first"
            )
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
            raise DatasetError(f"dataset {self.name!r}: labels must be an int64 tensor")
        if labels.shape != (images.shape[0],):
            raise DatasetError(
                f"dataset {self.name!r}: {images.shape[0]} images but labels have shape "
                f"{tuple(labels.shape)}"
            )
        if not names or not all(isinstance(n, str) and n for n in names):
            raise DatasetError(f"dataset {self.name!r}: class names must be non-empty strings")
        if len(set(names)) != len(names):
            raise DatasetError(f"dataset {self.name!r}: class names repeat: {list(names)}")
        if int(labels.min()) < 0 or int(labels.max()) >= len(names):
            raise DatasetError(
                f"dataset {self.name!r}: labels must lie in 0..{len(names) - 1} "
                f"(one per class name), got {int(labels.min())}..{int(labels.max())}"
            )

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def scaled(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The images (all, or those at `indices`) as float32 in [-1, 1]: x / 127.5 - 1."""
        pixels = self.images if indices is None else self.images[indices]
        return pixels.to(torch.float32) / 127.5 - 1.0  # (B, C, H, W)

    def split(
        self, held_out_fraction: float = 0.2, seed: int = 0
    ) -> tuple[ImageDataset, ImageDataset]:
        """(kept, held out): a seeded split stratified by class; both keep the original order.

        Each class gives round(count * fraction) images to the held-out part; both parts get
        at least one image. Both parts keep this dataset's name and class names.
        """
        if not 0.0 < held_out_fraction < 1.0:
            raise DatasetError(
                f"held_out_fraction must be strictly between 0 and 1, got {held_out_fraction}"
            )
        if len(self) < 2:
            raise DatasetError(f"dataset {self.name!r} has {len(self)} image; cannot split it")
        generator = torch.Generator().manual_seed(seed)
        per_class: list[torch.Tensor] = []
        for label in range(self.num_classes):
            members = torch.nonzero(self.labels == label).flatten()
            per_class.append(members[torch.randperm(len(members), generator=generator)])
        take = [round(len(members) * held_out_fraction) for members in per_class]
        if sum(take) == 0:  # tiny data: hold out one image of the largest class
            take[max(range(len(take)), key=lambda c: len(per_class[c]))] = 1
        if sum(take) == len(self):  # fraction near 1: keep one image of the largest class
            take[max(range(len(take)), key=lambda c: take[c])] -= 1
        held = torch.cat([members[:n] for members, n in zip(per_class, take, strict=True)])
        held_mask = torch.zeros(len(self), dtype=torch.bool)
        held_mask[held] = True
        return self._subset(~held_mask), self._subset(held_mask)

    def _subset(self, mask: torch.Tensor) -> ImageDataset:
        return ImageDataset(self.name, self.images[mask], self.labels[mask], self.class_names)

    def content_hash(self) -> str:
        """sha256 (hex) of the pixels, labels and class names; the name is not included."""
        digest = hashlib.sha256()
        header = {"shape": list(self.images.shape), "class_names": list(self.class_names)}
        digest.update(json.dumps(header, ensure_ascii=False).encode("utf-8"))
        digest.update(np.ascontiguousarray(self.images.cpu().numpy()).data)
        digest.update(np.ascontiguousarray(self.labels.cpu().numpy(), dtype="<i8").data)
        return digest.hexdigest()


# --- names and places ---------------------------------------------------------------------


def dataset_folder(data_dir: str | Path, name: str) -> Path:
    """Where the files of `mnist`, `fashion-mnist` or `cifar10` go: data_dir/datasets/name."""
    return Path(data_dir) / "datasets" / name


def packed_dataset_path(data_dir: str | Path, name: str) -> Path:
    """Where an uploaded dataset is stored: data_dir/datasets/name.npz."""
    return Path(data_dir) / "datasets" / f"{name}.npz"


def validate_upload_name(name: object) -> str:
    """Return `name` if it may name an uploaded dataset, else raise DatasetError saying why."""
    if not isinstance(name, str) or not UPLOAD_NAME_PATTERN.fullmatch(name):
        raise DatasetError(
            f"invalid dataset name {name!r}: use 1 to 64 characters from lowercase letters, "
            "digits, '.', '_' and '-', starting with a letter or digit"
        )
    if name in BUILTIN_DATASETS:
        raise DatasetError(
            f"dataset name {name!r} is taken by a built-in dataset "
            f"({', '.join(BUILTIN_DATASETS)}); choose another name"
        )
    return name


def _data_dir(data_dir: str | Path | None) -> Path:
    return DEFAULT_DATA_DIR if data_dir is None else Path(data_dir)


# --- the public entry points --------------------------------------------------------------


def load_dataset(name: str, data_dir: str | Path | None = None) -> ImageDataset:
    """A built-in dataset by name, or else the uploaded one stored under `data_dir`."""
    if name == "digits":
        return load_digits()
    if name == "digits-on-colour":
        return load_digits_on_colour()
    root = _data_dir(data_dir)
    if name in IDX_DATASETS:
        return load_idx_dataset(name, dataset_folder(root, name))
    if name == "cifar10":
        return load_cifar10(dataset_folder(root, name))
    return load_packed(_existing_upload(name, root), name=name)


def describe_dataset(name: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Shape, classes and size of a dataset, and whether its files are present.

    Reads only file headers for mnist, fashion-mnist, cifar10 and uploads. When a built-in's
    files are missing, `size` is that of the standard training set and `missing_files_hint`
    says what to put where.
    """
    root = _data_dir(data_dir)
    if name in BUILTIN_DATASETS:
        image_size, channels, classes, size = _BUILTIN_FACTS[name]
        hint: str | None = None
        try:
            if name == "digits":
                _digits_file()
            elif name == "digits-on-colour":
                _photo_files()  # checks the digits file too
            elif name in IDX_DATASETS:
                size = _idx_count(name, dataset_folder(root, name))
            else:
                _, size = _cifar10_batches(dataset_folder(root, name))
        except DatasetError as error:
            hint = str(error)
        return {
            "name": name,
            "image_size": image_size,
            "channels": channels,
            "classes": list(classes),
            "size": size,
            "builtin": True,
            "available": hint is None,
            "missing_files_hint": hint,
        }
    path = _existing_upload(name, root)
    images_shape, class_names = _packed_summary(path)
    return {
        "name": name,
        "image_size": images_shape[1],
        "channels": images_shape[3],
        "classes": class_names,
        "size": images_shape[0],
        "builtin": False,
        "available": True,
        "missing_files_hint": None,
    }


def _existing_upload(name: str, root: Path) -> Path:
    if not isinstance(name, str) or not UPLOAD_NAME_PATTERN.fullmatch(name):
        raise DatasetError(
            f"unknown dataset {name!r}: built-in datasets are {', '.join(BUILTIN_DATASETS)}; "
            "uploaded datasets have names of 1 to 64 characters from lowercase letters, "
            "digits, '.', '_' and '-', starting with a letter or digit"
        )
    path = packed_dataset_path(root, name)
    if not path.is_file():
        raise DatasetError(
            f"unknown dataset {name!r}: it is not built in ({', '.join(BUILTIN_DATASETS)}) "
            f"and no uploaded dataset of that name exists at {path.resolve()}; "
            "upload it first or choose a built-in dataset"
        )
    return path


# --- digits (scikit-learn's bundled file, read without importing scikit-learn) -------------


def _digits_file() -> Path:
    spec = importlib.util.find_spec("sklearn")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise DatasetError(
            "the built-in 'digits' dataset is read from the file scikit-learn ships, but "
            "scikit-learn is not installed: run `pip install scikit-learn`"
        )
    path = Path(next(iter(locations))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DatasetError(
            f"the built-in 'digits' dataset file is missing from scikit-learn ({path}); "
            "reinstall it with `pip install --force-reinstall scikit-learn`"
        )
    return path


def load_digits() -> ImageDataset:
    """1,797 real 8x8 handwritten digits, classes "0".."9"; pixels 0..16 become round(v*255/16)."""
    path = _digits_file()
    try:
        with gzip.open(path, "rt", encoding="ascii") as file:
            table = np.loadtxt(file, delimiter=",", dtype=np.float64, ndmin=2)  # (N, 65)
    except (OSError, EOFError, ValueError, zlib.error) as error:
        raise DatasetError(f"cannot read the digits file {path}: {error}") from error
    if table.shape[1] != 65:
        raise DatasetError(f"the digits file {path} has {table.shape[1]} columns, expected 65")
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"the digits file {path} holds values outside 0..16 or labels 0..9")
    images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return ImageDataset(
        "digits",
        torch.from_numpy(images),
        torch.from_numpy(labels.astype(np.int64)),
        MNIST_CLASSES,
    )


# --- digits on colour (digits blended over photographs scikit-learn ships) ----------------

COLOUR_DIGITS_SIZE = 32  # px: large enough for the photographs' texture to show
COLOUR_DIGITS_SEED = 20170330  # fixed: the dataset is the same everywhere
PHOTO_FILES = ("china.jpg", "flower.jpg")  # sklearn.datasets.load_sample_images' two photos


def _photo_files() -> tuple[Path, ...]:
    folder = _digits_file().parent.parent / "images"
    paths = tuple(folder / name for name in PHOTO_FILES)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DatasetError(
            f"the sample photographs of scikit-learn are missing ({', '.join(missing)}); "
            "reinstall it with `pip install --force-reinstall scikit-learn`"
        )
    return paths


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, s, s) uint8 -> (N, C, size, size) uint8, bilinear (antialiased when shrinking)."""
    x = torch.nn.functional.interpolate(
        images.float(), size=(size, size), mode="bilinear", align_corners=False,
        antialias=size < images.shape[2],
    )  # fmt: skip
    return x.round_().clamp_(0, 255).to(torch.uint8)


def load_digits_on_colour() -> ImageDataset:
    """The 1,797 digits at 32x32 RGB, each blended over a patch of a photograph.

    Digit i (upscaled bilinearly to 32x32, 0..255) is blended half and half with a 32x32
    patch p_i of one of scikit-learn's two sample photographs: (p_i + digit_i + 1) // 2 per
    channel. The background is the photo at half brightness, with its colour and texture;
    the strokes carry the same texture lifted by half the ink, so a digit is always brighter
    than its surroundings. (MNIST-M's |p_i - digit_i|, Ganin et al. 2016, inverts the strokes
    instead: on the photographs' bright patches, 40% of these digits, the strokes come out
    darker than the background and 8% of digits all but vanish, which made the digit's
    polarity a property of the patch that colour -> grey translations had to guess.)
    Photo, and patch corner, come from numpy's PCG64 seeded with COLOUR_DIGITS_SEED, in
    image order: the dataset is a pure function of the two files. Labels are the digits'.
    """
    digits = load_digits()
    strokes = resize_images(digits.images, COLOUR_DIGITS_SIZE).numpy().astype(np.int16)
    photos = []
    for path in _photo_files():
        try:
            with Image.open(path) as image:
                photos.append(np.asarray(image.convert("RGB"), dtype=np.int16))  # (H, W, 3)
        except _DECODE_ERRORS as error:
            raise DatasetError(f"cannot read the sample photograph {path}: {error}") from error
    rng = np.random.Generator(np.random.PCG64(COLOUR_DIGITS_SEED))
    size = COLOUR_DIGITS_SIZE
    out = np.empty((len(digits), 3, size, size), dtype=np.uint8)
    for i in range(len(digits)):
        photo = photos[int(rng.integers(len(photos)))]
        top = int(rng.integers(photo.shape[0] - size + 1))
        left = int(rng.integers(photo.shape[1] - size + 1))
        patch = photo[top : top + size, left : left + size].transpose(2, 0, 1)  # (3, s, s)
        out[i] = (patch + strokes[i] + 1) // 2  # (1, s, s) broadcast over RGB; 0..255
    return ImageDataset(
        "digits-on-colour", torch.from_numpy(out), digits.labels.clone(), MNIST_CLASSES
    )


# --- MNIST and Fashion-MNIST (IDX files) ----------------------------------------------------


def _find_file(folder: Path, filename: str) -> Path | None:
    """`filename` or `filename.gz` in `folder`, whichever exists (the plain one first)."""
    for candidate in (folder / filename, folder / f"{filename}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_files_error(
    name: str, folder: Path, files: list[str], missing: list[str], note: str
) -> DatasetError:
    return DatasetError(
        f"dataset {name!r} is not available: put the files {', '.join(files)} in the folder "
        f"{folder.resolve()} (missing: {', '.join(missing)}). {note} "
        "These files are never downloaded automatically."
    )


def _idx_paths(name: str, folder: Path) -> tuple[Path, Path]:
    images, labels = _find_file(folder, IDX_IMAGES_FILE), _find_file(folder, IDX_LABELS_FILE)
    if images is None or labels is None:
        files = [f"{IDX_IMAGES_FILE}.gz", f"{IDX_LABELS_FILE}.gz"]
        missing = [f for f, found in zip(files, (images, labels), strict=True) if found is None]
        note = f"They are the training-set files of the {name} distribution, gzipped or not."
        raise _missing_files_error(name, folder, files, missing, note)
    return images, labels


def _open_maybe_gzip(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _read_idx_header(path: Path, magic: int, dims: int) -> tuple[int, ...]:
    """The sizes in an IDX header, after checking its magic number."""
    try:
        with _open_maybe_gzip(path) as file:
            header = file.read(4 + 4 * dims)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    if len(header) < 4 + 4 * dims:
        raise DatasetError(f"{path} is too short to be an IDX file")
    found, *sizes = struct.unpack(f">{1 + dims}I", header)
    if found != magic:
        raise DatasetError(
            f"{path} is not an IDX file of the expected kind: magic number {found}, "
            f"expected {magic}; check that the images and labels files are not swapped"
        )
    return tuple(sizes)


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """The uint8 array in an IDX file, shaped by its header."""
    sizes = _read_idx_header(path, magic, dims)
    try:
        with _open_maybe_gzip(path) as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    expected = 4 + 4 * dims + int(np.prod(sizes))
    if len(data) != expected:
        raise DatasetError(
            f"{path} holds {len(data)} bytes but its header {sizes} needs {expected}; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(sizes)


def _idx_count(name: str, folder: Path) -> int:
    images_path, labels_path = _idx_paths(name, folder)
    count, _, _ = _read_idx_header(images_path, IDX_IMAGES_MAGIC, 3)
    (label_count,) = _read_idx_header(labels_path, IDX_LABELS_MAGIC, 1)
    if count != label_count:
        raise DatasetError(f"{images_path} has {count} images but {labels_path} {label_count}")
    return count


def load_idx_dataset(name: str, folder: Path) -> ImageDataset:
    """MNIST or Fashion-MNIST from the training IDX files in `folder` (gzipped or not)."""
    if name not in IDX_DATASETS:
        raise DatasetError(
            f"invalid IDX dataset {name!r}; valid choices are: {', '.join(IDX_DATASETS)}"
        )
    folder = Path(folder)
    images_path, labels_path = _idx_paths(name, folder)
    images = _read_idx(images_path, IDX_IMAGES_MAGIC, 3)  # (N, H, W)
    labels = _read_idx(labels_path, IDX_LABELS_MAGIC, 1)  # (N,)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels; use the matching pair of files"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{labels_path} holds label {labels.max()}; expected 0..9")
    class_names = FASHION_MNIST_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    return ImageDataset(
        name,
        torch.from_numpy(images[:, None].copy()),  # (N, 1, H, W)
        torch.from_numpy(labels.astype(np.int64)),
        class_names,
    )


# --- CIFAR-10 (binary version; never the pickled one) --------------------------------------


def _cifar10_batches(folder: Path) -> tuple[Path, int]:
    """(folder holding the five batches, number of records), checking every batch is whole.

    The batches may sit in folder/cifar-10-batches-bin (as the archive extracts) or in folder.
    """
    for candidate in (folder / CIFAR10_SUBFOLDER, folder):
        if all((candidate / batch).is_file() for batch in CIFAR10_BATCHES):
            break
    else:
        nearest = folder / CIFAR10_SUBFOLDER
        missing = [batch for batch in CIFAR10_BATCHES if not (nearest / batch).is_file()]
        note = (
            f"They come in the binary version (cifar-10-binary.tar.gz), which extracts to "
            f"{CIFAR10_SUBFOLDER}/; they may also sit directly in {folder.resolve()}. "
            "The Python (pickle) version is not read."
        )
        raise _missing_files_error("cifar10", nearest, list(CIFAR10_BATCHES), missing, note)
    count = 0
    for batch in CIFAR10_BATCHES:
        size = (candidate / batch).stat().st_size
        if size == 0 or size % CIFAR10_RECORD:
            raise DatasetError(
                f"{candidate / batch} is {size} bytes, not a whole number of "
                f"{CIFAR10_RECORD}-byte records; it is truncated or not the binary version"
            )
        count += size // CIFAR10_RECORD
    return candidate, count


def load_cifar10(folder: Path) -> ImageDataset:
    """CIFAR-10's five training batches (binary version) as (50000, 3, 32, 32) images."""
    batches, _ = _cifar10_batches(Path(folder))
    records = np.concatenate(
        [
            np.fromfile(batches / batch, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
            for batch in CIFAR10_BATCHES
        ]
    )  # (N, 3073)
    class_names: tuple[str, ...] = CIFAR10_CLASSES
    meta = batches / CIFAR10_META
    if meta.is_file():
        lines = meta.read_text(encoding="utf-8", errors="replace").splitlines()
        class_names = tuple(line.strip() for line in lines if line.strip())
        if len(class_names) != 10:
            raise DatasetError(
                f"{meta} lists {len(class_names)} class names, expected 10 (one per line); "
                "fix or delete it to use the standard names"
            )
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DatasetError(f"the CIFAR-10 batches in {batches} hold label {labels.max()}")
    images = records[:, 1:].reshape(-1, 3, 32, 32)  # planes R, G, B; rows top to bottom
    return ImageDataset("cifar10", torch.from_numpy(images), torch.from_numpy(labels), class_names)


# --- folders of images (uploads) ----------------------------------------------------------


def _visible(path: Path) -> bool:
    # Skip hidden files and the metadata folders macOS puts into zips.
    return not path.name.startswith(".") and path.name != "__MACOSX"


def _image_files(root: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """(files, labels, class names): one class per subfolder, or one class "all"."""
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a folder")
    entries = sorted((p for p in root.iterdir() if _visible(p)), key=lambda p: p.name)
    folders = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if not p.is_dir()]
    if not folders:
        if not loose:
            raise DatasetError(f"image folder {root} holds no images; add PNG or JPEG files")
        return loose, [0] * len(loose), ("all",)
    if loose:
        raise DatasetError(
            f"image folder {root} has both class subfolders and loose files "
            f"(such as {loose[0].name}); put every image inside a class subfolder"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        members = sorted((p for p in folder.iterdir() if _visible(p)), key=lambda p: p.name)
        nested = [p for p in members if p.is_dir()]
        if nested:
            raise DatasetError(
                f"class folder {folder} contains the folder {nested[0].name}; use one level "
                "of class folders holding the images themselves"
            )
        if not members:
            raise DatasetError(f"class folder {folder} holds no images; add some or remove it")
        files += members
        labels += [label] * len(members)
    return files, labels, tuple(p.name for p in folders)


def _decode_error(path: Path, error: Exception) -> DatasetError:
    return DatasetError(
        f"cannot decode {path} as a PNG or JPEG image ({error}); remove or replace the file"
    )


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """`image` as mode "L" (channels 1) or "RGB" (channels 3); transparency becomes white."""
    image = ImageOps.exif_transpose(image)  # JPEGs from cameras store rotation separately
    if image.mode.startswith("I"):  # 16-bit PNG: scale 0..65535 to 0..255
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" or "A" in image.mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def _square(image: Image.Image, size: int) -> Image.Image:
    """Center-crop to a square, then resize to size x size with LANCZOS."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def load_image_folder(
    root: Path,
    image_size: int | None = None,
    channels: int | None = None,
    name: str | None = None,
) -> ImageDataset:
    """Images from `root`: one subfolder per class (labels by sorted folder name), or images
    directly in `root` (one class, "all").

    Only PNG and JPEG are read, judged by the decoded format, not the extension; hidden files
    and `__MACOSX` are skipped. `channels` defaults to 1 when every image is grayscale, else
    3; palette and alpha images become RGB with transparent pixels composited on white.
    Non-square images are center-cropped, then all are resized with LANCZOS to `image_size`
    (default: the smallest image's side, at most 64).
    """
    root = Path(root)
    if image_size is not None and (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or not 1 <= image_size <= MAX_IMAGE_SIZE
    ):
        raise DatasetError(
            f"image_size must be an integer in 1..{MAX_IMAGE_SIZE}, got {image_size!r}"
        )
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be 1, 3 or None (automatic), got {channels!r}")
    files, labels, class_names = _image_files(root)

    # First pass: headers only, for the automatic size and channel count.
    sides: list[int] = []
    all_gray = True
    for path in files:
        try:
            with Image.open(path) as image:
                fmt, mode, (width, height) = image.format, image.mode, image.size
        except _DECODE_ERRORS as error:
            raise _decode_error(path, error) from error
        if fmt not in IMAGE_FORMATS:
            raise DatasetError(f"{path} is a {fmt} image; only PNG and JPEG images are accepted")
        sides.append(min(width, height))
        all_gray = all_gray and mode in _GRAY_MODES
    size = image_size if image_size is not None else min(min(sides), MAX_AUTO_IMAGE_SIZE)
    depth = channels if channels is not None else (1 if all_gray else 3)

    # Second pass: decode, convert, crop and resize one image at a time.
    images = np.empty((len(files), size, size, depth), dtype=np.uint8)  # (N, H, W, C)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:
                image.load()
                pixels = np.asarray(_square(_to_mode(image, depth), size), dtype=np.uint8)
        except _DECODE_ERRORS as error:
            raise _decode_error(path, error) from error
        images[i] = pixels.reshape(size, size, depth)
    return ImageDataset(
        name if name is not None else root.name,
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),  # (N, C, H, W)
        torch.tensor(labels, dtype=torch.int64),
        class_names,
    )


# --- packed .npz (how uploads are stored) --------------------------------------------------


def save_packed(dataset: ImageDataset, path: Path) -> None:
    """Write `dataset` to `path` as a compressed .npz, atomically (temp file, fsync, rename).

    Arrays: images (N, H, W, C) uint8, labels (N,) int64, class_names (K,) unicode, name
    (0-d unicode), format_version (0-d int). No object arrays, so it loads without pickle.
    """
    with atomic_writer(Path(path)) as file:
        np.savez_compressed(
            file,
            images=dataset.images.permute(0, 2, 3, 1).contiguous().numpy(),
            labels=dataset.labels.numpy().astype(np.int64),
            class_names=np.array(dataset.class_names, dtype=np.str_),
            name=np.array(dataset.name, dtype=np.str_),
            format_version=np.array(PACKED_FORMAT_VERSION, dtype=np.int64),
        )


_PACKED_KEYS = ("images", "labels", "class_names")


def _load_npz_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"packed dataset {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DatasetError(f"{path} is a single array, not a packed dataset (.npz)")
            absent = [key for key in _PACKED_KEYS if key not in archive.files]
            if absent:
                raise DatasetError(f"{path} is not a packed dataset: it lacks {absent}")
            return {key: archive[key] for key in keys if key in archive.files}
    except DatasetError:
        raise
    except ValueError as error:  # includes "Object arrays cannot be loaded ..."
        raise DatasetError(
            f"{path} is malformed or holds pickled objects, which are never loaded ({error})"
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DatasetError(f"cannot read packed dataset {path}: {error}") from error


def _check_class_names(path: Path, class_names: np.ndarray) -> list[str]:
    if class_names.ndim != 1 or class_names.dtype.kind != "U" or class_names.size == 0:
        raise DatasetError(
            f"{path}: class_names must be a non-empty 1-D unicode array, got "
            f"{class_names.dtype} of shape {class_names.shape}"
        )
    return [str(n) for n in class_names]


def load_packed(path: Path, name: str | None = None) -> ImageDataset:
    """A dataset written by `save_packed`; every array is checked, nothing is unpickled."""
    path = Path(path)
    arrays = _load_npz_arrays(path, (*_PACKED_KEYS, "name", "format_version"))
    images, labels = arrays["images"], arrays["labels"]
    version = arrays.get("format_version")
    if version is not None and (
        version.shape != () or version.dtype.kind not in "iu" or int(version) != 1
    ):
        raise DatasetError(f"{path}: unsupported packed format version {version!r}; expected 1")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DatasetError(
            f"{path}: images must be uint8 of shape (N, H, W, C) with C = 1 or 3, got "
            f"{images.dtype} of shape {images.shape}"
        )
    if labels.dtype.kind not in "iu" or labels.shape != (images.shape[0],):
        raise DatasetError(
            f"{path}: labels must be integers of shape ({images.shape[0]},), got "
            f"{labels.dtype} of shape {labels.shape}"
        )
    class_names = _check_class_names(path, arrays["class_names"])
    if name is None:
        stored = arrays.get("name")
        valid = stored is not None and stored.shape == () and stored.dtype.kind == "U"
        name = str(stored) if valid else path.stem
    return ImageDataset(
        name,
        torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),  # (N, C, H, W)
        torch.from_numpy(labels.astype(np.int64)),
        tuple(class_names),
    )


def _packed_summary(path: Path) -> tuple[tuple[int, ...], list[str]]:
    """(images shape (N, H, W, C), class names) without decompressing the images."""
    arrays = _load_npz_arrays(path, ("class_names",))
    try:
        with zipfile.ZipFile(path) as archive, archive.open("images.npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DatasetError(f"cannot read the images header of {path}: {error}") from error
    if dtype != np.uint8 or len(shape) != 4 or shape[3] not in (1, 3) or shape[1] != shape[2]:
        raise DatasetError(f"{path}: images must be square uint8 (N, H, W, C), got {shape}")
    return tuple(int(s) for s in shape), _check_class_names(path, arrays["class_names"])
