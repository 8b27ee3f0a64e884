from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import ganserve.gan.classifier as classifier_module
from ganserve.gan.classifier import (
    CLASSIFIER_DESCRIPTION,
    CLASSIFIER_WEIGHTS,
    FEATURE_DIM,
    Classifier,
    TrainedClassifier,
    classifier_for,
    default_steps,
    fit_classifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import CheckpointError, DatasetError

QUICK = 20  # optimizer steps where only the plumbing matters


class _Exploit:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained(digits: ImageDataset) -> TrainedClassifier:
    torch.set_num_threads(1)
    return fit_classifier(digits)  # the default recipe, as the worker trains it


@pytest.fixture
def count_trainings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = classifier_module.train_classifier

    def counting(*args: object, **kwargs: object) -> TrainedClassifier:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(classifier_module, "train_classifier", counting)
    return calls


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 32), (3, 64)])
def test_one_architecture_fits_every_supported_size(channels: int, size: int) -> None:
    model = Classifier(channels, num_classes=7)
    x = torch.rand(3, channels, size, size) * 2 - 1
    assert model.features(x).shape == (3, FEATURE_DIM)
    assert model.logits(x).shape == (3, 7)


def test_default_recipe_reaches_high_held_out_accuracy_on_digits(
    trained: TrainedClassifier, digits: ImageDataset
) -> None:
    assert trained.accuracy >= 0.9
    assert trained.recipe.steps == default_steps(len(digits) - len(trained.held_out(digits)))
    assert trained.num_classes == 10 and trained.image_shape == (1, 8, 8)
    assert trained.dataset_hash == digits.content_hash()
    assert len(trained.identity) == 16 and int(trained.identity, 16) >= 0
    assert not trained.model.training


def test_held_out_split_is_the_one_it_never_trained_on(
    trained: TrainedClassifier, digits: ImageDataset
) -> None:
    held_out = trained.held_out(digits)
    assert torch.equal(held_out.images, digits.split(0.2, 0)[1].images)
    features, predictions = trained.embed(held_out.images)
    assert features.shape == (len(held_out), FEATURE_DIM) and features.dtype == torch.float64
    assert float((predictions == held_out.labels).double().mean()) == pytest.approx(
        trained.accuracy
    )


def test_training_is_deterministic_for_a_seed(digits: ImageDataset) -> None:
    train, held_out = digits.split(0.2, 0)
    a = train_classifier(train, held_out, steps=QUICK, batch_size=64, seed=5)
    b = train_classifier(train, held_out, steps=QUICK, batch_size=64, seed=5)
    c = train_classifier(train, held_out, steps=QUICK, batch_size=64, seed=6)
    assert a.identity == b.identity and a.accuracy == b.accuracy
    assert c.identity != a.identity


def test_unlabelled_data_cannot_train_a_classifier(digits: ImageDataset) -> None:
    unlabelled = ImageDataset("u", digits.images, torch.zeros(len(digits), dtype=torch.long),
                              ("all",))  # fmt: skip
    with pytest.raises(DatasetError, match="no class labels"):
        fit_classifier(unlabelled, steps=QUICK)


def test_save_and_load_round_trip(trained: TrainedClassifier, tmp_path: Path) -> None:
    description = save_classifier(trained, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        CLASSIFIER_DESCRIPTION,
        CLASSIFIER_WEIGHTS,
    ]
    assert description["sha256"][:16] == trained.identity
    loaded = load_classifier(tmp_path)
    assert loaded.identity == trained.identity
    assert loaded.accuracy == trained.accuracy and loaded.recipe == trained.recipe
    x = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.embed(x)[0], trained.embed(x)[0])


def test_cache_hit_does_not_retrain(
    digits: ImageDataset, tmp_path: Path, count_trainings: list[int]
) -> None:
    first = classifier_for(digits, tmp_path, steps=QUICK)
    assert len(count_trainings) == 1
    assert (tmp_path / digits.content_hash() / CLASSIFIER_DESCRIPTION).is_file()
    second = classifier_for(digits, tmp_path, steps=QUICK)
    assert len(count_trainings) == 1
    assert second.identity == first.identity
    classifier_for(digits, tmp_path, steps=QUICK + 1)  # another recipe: retrained
    assert len(count_trainings) == 2


def test_tampered_cached_weights_are_refused_and_retrained(
    digits: ImageDataset, tmp_path: Path, count_trainings: list[int]
) -> None:
    first = classifier_for(digits, tmp_path, steps=QUICK)
    folder = tmp_path / digits.content_hash()
    weights = bytearray((folder / CLASSIFIER_WEIGHTS).read_bytes())
    weights[-1] ^= 0xFF  # one flipped byte in the last tensor
    (folder / CLASSIFIER_WEIGHTS).write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match="sha256"):
        load_classifier(folder)
    again = classifier_for(digits, tmp_path, steps=QUICK)
    assert len(count_trainings) == 2
    assert again.identity == first.identity  # deterministic retraining
    assert load_classifier(folder).identity == first.identity  # the cache is repaired


def test_a_pickle_in_the_cache_is_refused_without_running_it(
    digits: ImageDataset, tmp_path: Path, count_trainings: list[int]
) -> None:
    classifier_for(digits, tmp_path, steps=QUICK)
    folder = tmp_path / digits.content_hash()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    (folder / CLASSIFIER_WEIGHTS).write_bytes(payload)
    # Even with a description that vouches for the pickle's hash, nothing unpickles it.
    description = json.loads((folder / CLASSIFIER_DESCRIPTION).read_text())
    description["sha256"] = hashlib.sha256(payload).hexdigest()
    (folder / CLASSIFIER_DESCRIPTION).write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_classifier(folder)
    classifier_for(digits, tmp_path, steps=QUICK)
    assert len(count_trainings) == 2
    assert not marker.exists()


def test_a_foreign_description_is_refused(tmp_path: Path) -> None:
    (tmp_path / CLASSIFIER_DESCRIPTION).write_text(json.dumps({"format": "something-else"}))
    (tmp_path / CLASSIFIER_WEIGHTS).write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a ganserve classifier"):
        load_classifier(tmp_path)
    with pytest.raises(CheckpointError, match="no readable classifier"):
        load_classifier(tmp_path / "missing")
