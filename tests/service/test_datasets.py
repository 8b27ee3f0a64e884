"""GET /v1/datasets: the built-ins (available or with a hint) and packed uploads."""

from __future__ import annotations

from typing import Any

import torch
from fastapi.testclient import TestClient

from ganserve.gan.data import ImageDataset, packed_dataset_path, save_packed
from ganserve.settings import Settings


def by_name(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/datasets")
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["items"]}


def test_lists_the_builtins_with_their_shapes(client: TestClient) -> None:
    datasets = by_name(client)
    assert list(datasets)[:4] == ["digits", "mnist", "fashion-mnist", "cifar10"]
    assert datasets["digits"] == {
        "name": "digits", "builtin": True, "available": True, "image_size": 8, "channels": 1,
        "classes": [str(d) for d in range(10)], "num_classes": 10, "size": 1797, "hint": None,
    }  # fmt: skip
    cifar = datasets["cifar10"]
    assert (cifar["image_size"], cifar["channels"], cifar["num_classes"]) == (32, 3, 10)


def test_missing_builtin_files_are_unavailable_with_a_hint(
    client: TestClient, settings: Settings
) -> None:
    mnist = by_name(client)["mnist"]
    assert mnist["available"] is False and mnist["size"] == 60000
    assert "train-images-idx3-ubyte" in mnist["hint"]
    # where to put them, relative to the data dir: the server's own layout is not revealed
    assert "$GANSERVE_DATA_DIR/datasets/mnist" in mnist["hint"]
    assert str(settings.data_dir.resolve()) not in mnist["hint"]
    assert "cifar-10-batches-bin" in by_name(client)["cifar10"]["hint"]


def test_lists_uploaded_packed_datasets(client: TestClient, settings: Settings) -> None:
    dataset = ImageDataset(
        "faces",
        torch.zeros((12, 3, 16, 16), dtype=torch.uint8),
        torch.arange(12, dtype=torch.int64) % 3,
        ("a", "b", "c"),
    )
    save_packed(dataset, packed_dataset_path(settings.data_dir, "faces"))
    (settings.data_dir / "datasets" / "broken.npz").write_bytes(b"not a zip")
    (settings.data_dir / "datasets" / "Not Valid.npz").write_bytes(b"ignored")
    datasets = by_name(client)
    assert datasets["faces"] == {
        "name": "faces", "builtin": False, "available": True, "image_size": 16, "channels": 3,
        "classes": ["a", "b", "c"], "num_classes": 3, "size": 12, "hint": None,
    }  # fmt: skip
    assert datasets["broken"]["available"] is False and datasets["broken"]["hint"]
    assert "Not Valid" not in datasets
    assert list(datasets) == [
        "digits", "mnist", "fashion-mnist", "cifar10", "digits-on-colour", "broken", "faces",
    ]  # fmt: skip
