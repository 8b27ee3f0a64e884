"""Datasets: the built-in digits, IDX and CIFAR files, image folders, packed uploads."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganserve.gan.data import (
    BUILTIN_DATASETS,
    FASHION_MNIST_CLASSES,
    ImageDataset,
    dataset_folder,
    describe_dataset,
    load_cifar10,
    load_dataset,
    load_digits,
    load_idx_dataset,
    load_image_folder,
    load_packed,
    packed_dataset_path,
    save_packed,
    validate_upload_name,
)
from ganserve.gan.errors import DatasetError

# --- helpers ----------------------------------------------------------------------------------


def write_idx(
    folder: Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    gz: bool,
    images_magic: int = 2051,
) -> None:
    """Write MNIST-style training files: images (N, H, W) uint8, labels (N,) uint8."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    blobs = {
        "train-images-idx3-ubyte": struct.pack(">4I", images_magic, n, h, w) + images.tobytes(),
        "train-labels-idx1-ubyte": struct.pack(">2I", 2049, len(labels)) + labels.tobytes(),
    }
    for filename, blob in blobs.items():
        if gz:
            (folder / f"{filename}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / filename).write_bytes(blob)


def cifar_record(label: int, red: int, green: int, blue: int) -> bytes:
    """One CIFAR-10 binary record: flat colour planes, with pixel (row 0, col 1) of R set to 7."""
    planes = np.empty((3, 32, 32), dtype=np.uint8)
    planes[0], planes[1], planes[2] = red, green, blue
    planes[0, 0, 1] = 7
    return bytes([label]) + planes.tobytes()


def tiny_dataset(n_per_class: int = 10, classes: int = 10) -> ImageDataset:
    """Images whose first pixel is their index, so every image is unique and traceable."""
    n = n_per_class * classes
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    return ImageDataset("tiny", images, labels, tuple(f"c{i}" for i in range(classes)))


# --- digits -----------------------------------------------------------------------------------


def test_digits_is_the_real_sklearn_data() -> None:
    digits = load_digits()
    assert digits.name == "digits"
    assert tuple(digits.images.shape) == (1797, 1, 8, 8)
    assert digits.images.dtype == torch.uint8
    assert digits.labels.dtype == torch.int64
    assert digits.class_names == tuple(str(d) for d in range(10))
    assert digits.num_classes == 10
    assert (digits.channels, digits.image_size, digits.image_shape) == (1, 8, (1, 8, 8))
    assert len(digits) == 1797
    # Every class is present in roughly equal numbers (174..183 in the real data).
    counts = torch.bincount(digits.labels, minlength=10)
    assert counts.sum() == 1797 and int(counts.min()) >= 170
    # First row of the CSV starts 0,0,5,13,9,1 and is a zero: v -> round(v * 255 / 16).
    assert digits.images[0, 0, 0, :6].tolist() == [0, 0, 80, 207, 143, 16]
    assert int(digits.labels[0]) == 0
    assert int(digits.images.min()) == 0 and int(digits.images.max()) == 255
    scaled = digits.scaled()
    assert scaled.dtype == torch.float32 and scaled.shape == digits.images.shape
    assert float(scaled.min()) == -1.0 and float(scaled.max()) == 1.0
    picked = digits.scaled(torch.tensor([0, 5]))
    assert picked.shape == (2, 1, 8, 8)
    assert torch.equal(picked[0], scaled[0])
    assert float(picked[0, 0, 0, 2]) == pytest.approx(80 / 127.5 - 1)


def test_loading_digits_does_not_import_sklearn() -> None:
    code = (
        "import sys; from ganserve.gan.data import load_dataset; "
        "d = load_dataset('digits'); assert len(d) == 1797; "
        "assert 'sklearn' not in sys.modules, 'sklearn was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- MNIST / Fashion-MNIST --------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 6, 6), dtype=np.uint8)
    labels = np.array([3, 0, 9, 3, 1], dtype=np.uint8)
    folder = dataset_folder(tmp_path, "mnist")
    write_idx(folder, images, labels, gz=gz)

    dataset = load_dataset("mnist", tmp_path)
    assert dataset.name == "mnist"
    assert tuple(dataset.images.shape) == (5, 1, 6, 6)
    assert np.array_equal(dataset.images[:, 0].numpy(), images)
    assert dataset.labels.tolist() == [3, 0, 9, 3, 1]
    assert dataset.class_names == tuple(str(d) for d in range(10))


def test_fashion_mnist_class_names(tmp_path: Path) -> None:
    write_idx(tmp_path, np.zeros((2, 4, 4), np.uint8), np.array([9, 0], np.uint8), gz=True)
    dataset = load_idx_dataset("fashion-mnist", tmp_path)
    assert dataset.class_names[dataset.labels[0]] == "Ankle boot"
    assert dataset.class_names[0] == "T-shirt/top"
    assert dataset.class_names == FASHION_MNIST_CLASSES and len(FASHION_MNIST_CLASSES) == 10


def test_idx_bad_magic_number(tmp_path: Path) -> None:
    write_idx(
        tmp_path, np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.uint8), gz=False, images_magic=2049
    )
    with pytest.raises(DatasetError, match="magic number 2049, expected 2051") as info:
        load_idx_dataset("mnist", tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_idx_count_mismatch_and_truncation(tmp_path: Path) -> None:
    write_idx(tmp_path, np.zeros((3, 4, 4), np.uint8), np.zeros(2, np.uint8), gz=False)
    with pytest.raises(DatasetError, match="3 images but .* 2 labels"):
        load_idx_dataset("mnist", tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="truncated"):
        load_idx_dataset("mnist", tmp_path)


def test_idx_dataset_name_is_checked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="mnist, fashion-mnist"):
        load_idx_dataset("kmnist", tmp_path)


# --- CIFAR-10 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("subfolder", [True, False])
def test_cifar10_binary_batches(tmp_path: Path, subfolder: bool) -> None:
    folder = dataset_folder(tmp_path, "cifar10")
    batches = folder / "cifar-10-batches-bin" if subfolder else folder
    batches.mkdir(parents=True)
    for i in range(1, 6):
        records = cifar_record(i, 10 * i, 100 + i, 200 + i) + cifar_record(0, 1, 2, 3)
        (batches / f"data_batch_{i}.bin").write_bytes(records)
    (batches / "test_batch.bin").write_bytes(cifar_record(5, 0, 0, 0))  # not read

    dataset = load_dataset("cifar10", tmp_path)
    assert tuple(dataset.images.shape) == (10, 3, 32, 32)
    assert dataset.labels.tolist() == [1, 0, 2, 0, 3, 0, 4, 0, 5, 0]
    # Batch 3's first record: R plane 30, G 103, B 203, and R(0, 1) = 7.
    image = dataset.images[4]
    assert image[:, 5, 5].tolist() == [30, 103, 203]
    assert image[:, 0, 1].tolist() == [7, 103, 203]
    assert dataset.class_names[0] == "airplane" and dataset.class_names[9] == "truck"
    assert describe_dataset("cifar10", tmp_path)["size"] == 10


def test_cifar10_meta_names_and_bad_sizes(tmp_path: Path) -> None:
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}.bin").write_bytes(cifar_record(2, 0, 0, 0))
    names = [f"class{i}" for i in range(10)]
    (tmp_path / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    dataset = load_cifar10(tmp_path)
    assert dataset.class_names == tuple(names)
    assert dataset.class_names[int(dataset.labels[0])] == "class2"

    (tmp_path / "data_batch_4.bin").write_bytes(cifar_record(2, 0, 0, 0)[:-5])
    with pytest.raises(DatasetError, match="data_batch_4.bin is 3068 bytes"):
        load_cifar10(tmp_path)


# --- missing files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("mnist", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]),
        ("fashion-mnist", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]),
        ("cifar10", [f"data_batch_{i}.bin" for i in range(1, 6)]),
    ],
)
def test_missing_files_say_what_to_put_where(tmp_path: Path, name: str, files: list[str]) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    for filename in files:
        assert filename in message
    assert str((tmp_path / "datasets" / name).resolve()) in message
    assert "never downloaded" in message

    described = describe_dataset(name, tmp_path)
    assert described["available"] is False and described["builtin"] is True
    assert described["missing_files_hint"] == message


def test_missing_files_without_data_dir_use_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist")
    assert str(tmp_path.resolve() / "ganserve-data" / "datasets" / "mnist") in str(info.value)


def test_missing_one_idx_file_names_only_that_one(tmp_path: Path) -> None:
    write_idx(tmp_path, np.zeros((1, 4, 4), np.uint8), np.zeros(1, np.uint8), gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"missing: train-labels-idx1-ubyte\.gz\)"):
        load_idx_dataset("mnist", tmp_path)


def test_describe_reads_headers(tmp_path: Path) -> None:
    write_idx(
        dataset_folder(tmp_path, "mnist"),
        np.zeros((4, 28, 28), np.uint8),
        np.zeros(4, np.uint8),
        gz=True,
    )
    described = describe_dataset("mnist", tmp_path)
    assert described == {
        "name": "mnist",
        "image_size": 28,
        "channels": 1,
        "classes": [str(d) for d in range(10)],
        "size": 4,
        "builtin": True,
        "available": True,
        "missing_files_hint": None,
    }
    digits = describe_dataset("digits", None)
    assert (digits["size"], digits["available"], digits["image_size"]) == (1797, True, 8)


# --- image folders ----------------------------------------------------------------------------


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    (root / "b_dog").mkdir(parents=True)  # created first, sorted second
    (root / "a_cat").mkdir()
    # 12x4: red | green | blue bands; the centre crop is the green square.
    bands = np.zeros((4, 12, 3), np.uint8)
    bands[:, :4, 0] = bands[:, 4:8, 1] = bands[:, 8:, 2] = 255
    Image.fromarray(bands).save(root / "a_cat" / "wide.png")
    # RGBA: transparent pixels become white, opaque ones keep their colour.
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 2] = 200
    rgba[:2, :, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(root / "a_cat" / "alpha.png")
    # A JPEG with a misleading extension: judged by content.
    Image.new("RGB", (8, 8), (250, 10, 10)).save(root / "b_dog" / "photo.bin", format="JPEG")
    (root / ".DS_Store").write_bytes(b"\0junk")  # hidden files are skipped

    dataset = load_image_folder(root, image_size=4)
    assert dataset.name == "pets"
    assert dataset.class_names == ("a_cat", "b_dog")
    assert tuple(dataset.images.shape) == (3, 3, 4, 4)
    assert dataset.labels.tolist() == [0, 0, 1]  # alpha.png, wide.png, photo.bin
    alpha, wide, photo = dataset.images
    assert alpha[:, 0, 0].tolist() == [0, 0, 200]
    assert alpha[:, 3, 3].tolist() == [255, 255, 255]
    assert (wide[1] == 255).all() and (wide[0] == 0).all() and (wide[2] == 0).all()
    assert int(photo[0].float().mean()) > 230 and int(photo[1].float().mean()) < 30


def test_image_folder_automatic_size_and_channels(tmp_path: Path) -> None:
    Image.new("L", (10, 10), 30).save(tmp_path / "a.png")
    Image.new("L", (6, 9), 200).save(tmp_path / "b.jpg", format="JPEG")
    dataset = load_image_folder(tmp_path, name="grays")
    assert dataset.name == "grays"
    assert dataset.class_names == ("all",) and dataset.labels.tolist() == [0, 0]
    assert tuple(dataset.images.shape) == (2, 1, 6, 6)  # smallest side, grayscale
    assert int(dataset.images[0].float().mean()) == 30

    big = tmp_path / "big"
    big.mkdir()
    Image.new("L", (100, 120), 5).save(big / "x.png")
    assert load_image_folder(big).image_size == 64  # capped
    rgb = load_image_folder(big, channels=3, image_size=16)
    assert rgb.image_shape == (3, 16, 16) and int(rgb.images.max()) == 5


def test_image_folder_undecodable_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "cls").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cls" / "good.png")
    (tmp_path / "cls" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetError, match=r"broken\.png"):
        load_image_folder(tmp_path)


def test_image_folder_truncated_png_is_named(tmp_path: Path) -> None:
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).astype(np.uint8).reshape(64, 64)).save(
        tmp_path / "cut.png"
    )
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cut\.png"):
        load_image_folder(tmp_path)


def test_image_folder_refuses_other_formats_and_empty_folders(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "anim.png", format="GIF")
    with pytest.raises(DatasetError, match=r"anim\.png is a GIF image"):
        load_image_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        load_image_folder(empty)
    with pytest.raises(DatasetError, match="image_size"):
        load_image_folder(tmp_path, image_size=0)


# --- packed uploads ---------------------------------------------------------------------------


def test_packed_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, size=(7, 3, 5, 5), dtype=np.uint8))
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    original = ImageDataset("shapes", images, labels, ("circle", "square", "trïangle"))
    path = packed_dataset_path(tmp_path, "shapes")
    assert path == tmp_path / "datasets" / "shapes.npz"
    save_packed(original, path)
    assert sorted(os.listdir(path.parent)) == ["shapes.npz"]  # no temp file left behind

    with np.load(path, allow_pickle=False) as raw:
        assert raw["images"].shape == (7, 5, 5, 3) and raw["images"].dtype == np.uint8
        assert raw["class_names"].dtype.kind == "U"
        assert raw["labels"].dtype == np.int64

    loaded = load_dataset("shapes", tmp_path)
    assert torch.equal(loaded.images, images)
    assert torch.equal(loaded.labels, labels)
    assert loaded.class_names == ("circle", "square", "trïangle")
    assert loaded.name == "shapes"
    assert loaded.content_hash() == original.content_hash()
    assert load_packed(path).name == "shapes"

    described = describe_dataset("shapes", tmp_path)
    assert described["size"] == 7 and described["channels"] == 3
    assert described["image_size"] == 5 and described["builtin"] is False
    assert described["classes"] == ["circle", "square", "trïangle"]


class _Exploit:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("field", ["images", "class_names"])
def test_packed_pickled_objects_are_refused(tmp_path: Path, field: str) -> None:
    marker = tmp_path / "pwned"
    arrays: dict[str, np.ndarray] = {
        "images": np.zeros((1, 2, 2, 1), np.uint8),
        "labels": np.zeros(1, np.int64),
        "class_names": np.array(["all"]),
    }
    arrays[field] = np.array([_Exploit(marker)], dtype=object)
    path = tmp_path / "evil.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="pickled"):
        load_packed(path)
    assert not marker.exists()


def test_packed_malformed_files_are_refused(tmp_path: Path) -> None:
    base: dict[str, np.ndarray] = {
        "images": np.zeros((2, 3, 3, 1), np.uint8),
        "labels": np.zeros(2, np.int64),
        "class_names": np.array(["a", "b"]),
    }
    cases: dict[str, tuple[dict[str, np.ndarray], str]] = {
        "float images": ({"images": np.zeros((2, 3, 3, 1), np.float32)}, "uint8"),
        "not square": ({"images": np.zeros((2, 3, 4, 1), np.uint8)}, "square"),
        "label count": ({"labels": np.zeros(3, np.int64)}, "labels"),
        "label range": ({"labels": np.array([0, 2])}, "labels must lie in 0..1"),
        "bytes names": ({"class_names": np.array([b"a", b"b"])}, "unicode"),
    }
    for case, (override, message) in cases.items():
        path = tmp_path / f"{case}.npz"
        np.savez(path, **(base | override))  # type: ignore[arg-type]
        with pytest.raises(DatasetError, match=message):
            load_packed(path)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="garbage.npz"):
        load_packed(tmp_path / "garbage.npz")
    np.savez(tmp_path / "partial.npz", images=base["images"])
    with pytest.raises(DatasetError, match="lacks"):
        load_packed(tmp_path / "partial.npz")


# --- split and hashing ------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_stratified() -> None:
    dataset = tiny_dataset()
    kept, held = dataset.split(0.2, seed=3)
    assert (len(kept), len(held)) == (80, 20)
    kept_ids = set(kept.images[:, 0, 0, 0].tolist())
    held_ids = set(held.images[:, 0, 0, 0].tolist())
    assert kept_ids.isdisjoint(held_ids) and kept_ids | held_ids == set(range(100))
    assert torch.bincount(held.labels, minlength=10).tolist() == [2] * 10
    for part in (kept, held):  # labels travel with their images
        assert torch.equal(part.images[:, 0, 0, 0].long() % 10, part.labels)
        assert part.class_names == dataset.class_names

    again_kept, again_held = dataset.split(0.2, seed=3)
    assert torch.equal(again_held.images, held.images)
    assert torch.equal(again_kept.images, kept.images)
    _, other = dataset.split(0.2, seed=4)
    assert set(other.images[:, 0, 0, 0].tolist()) != held_ids


def test_split_edge_cases() -> None:
    two = tiny_dataset(n_per_class=1, classes=2)
    kept, held = two.split(0.2)
    assert (len(kept), len(held)) == (1, 1)
    kept, held = tiny_dataset(n_per_class=1, classes=3).split(0.9)
    assert (len(kept), len(held)) == (1, 2)
    with pytest.raises(DatasetError, match="between 0 and 1"):
        two.split(1.0)


def test_content_hash_identifies_the_data() -> None:
    dataset = tiny_dataset()
    digest = dataset.content_hash()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert tiny_dataset().content_hash() == digest
    renamed = ImageDataset("renamed", dataset.images, dataset.labels, dataset.class_names)
    assert renamed.content_hash() == digest  # the name is not part of the data
    changed = dataset.images.clone()
    changed[57, 0, 1, 1] = 1
    relabelled = dataset.labels.clone()
    relabelled[0] = 1
    renamed_classes = ("x", *dataset.class_names[1:])
    variants = [
        ImageDataset("tiny", changed, dataset.labels, dataset.class_names),
        ImageDataset("tiny", dataset.images, relabelled, dataset.class_names),
        ImageDataset("tiny", dataset.images, dataset.labels, renamed_classes),
    ]
    digests = {variant.content_hash() for variant in variants}
    assert len(digests) == 3 and digest not in digests
    assert load_digits().content_hash() == load_digits().content_hash()


def test_dataset_validates_its_tensors() -> None:
    with pytest.raises(DatasetError, match="square"):
        ImageDataset("x", torch.zeros(1, 1, 2, 3, dtype=torch.uint8), torch.zeros(1).long(), ("a",))
    with pytest.raises(DatasetError, match="uint8"):
        ImageDataset("x", torch.zeros(1, 1, 2, 2), torch.zeros(1).long(), ("a",))
    with pytest.raises(DatasetError, match="labels must lie"):
        ImageDataset("x", torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.ones(1).long(), ("a",))


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../secret", "a/../../b", "/etc/passwd", "..", ".hidden", "UPPER", "", "x" * 65]
)
def test_bad_upload_names_are_rejected(tmp_path: Path, name: str) -> None:
    outside = tmp_path / "secret.npz"
    save_packed(tiny_dataset(), outside)
    with pytest.raises(DatasetError, match="unknown dataset") as info:
        load_dataset(name, tmp_path / "data")
    for builtin in BUILTIN_DATASETS:
        assert builtin in str(info.value)
    with pytest.raises(DatasetError, match="invalid dataset name"):
        validate_upload_name(name)


def test_unknown_upload_lists_builtins(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="digits, mnist, fashion-mnist, cifar10") as info:
        load_dataset("my-faces", tmp_path)
    assert str((tmp_path / "datasets" / "my-faces.npz").resolve()) in str(info.value)
    assert validate_upload_name("my-faces.v2") == "my-faces.v2"
    with pytest.raises(DatasetError, match="built-in"):
        validate_upload_name("mnist")
