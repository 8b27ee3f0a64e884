from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from ganserve.gan.checkpoint import (
    EXPORT_DESCRIPTION,
    EXPORT_WEIGHTS,
    export_generator,
    list_checkpoints,
    load_checkpoint,
    load_generator,
    load_latest_checkpoint,
    save_checkpoint,
)
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import ImageDataset
from ganserve.gan.errors import CheckpointError
from ganserve.gan.sample import generate, make_noise
from ganserve.gan.train import train

TINY = TrainConfig(steps=6, batch_size=32, device="cpu", checkpoint_every=3)


class _Exploit:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def run(digits: ImageDataset, tmp_path: Path) -> Path:
    train(TINY, digits, tmp_path / "run")
    return tmp_path / "run"


def test_torn_checkpoint_is_skipped_for_the_previous_one(run: Path) -> None:
    good = list_checkpoints(run / "checkpoints")[-1][1]  # step 6
    torn = run / "checkpoints" / "step-000000009.pt"
    torn.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a write cut in half
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [3, 6, 9]
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(torn)
    state = load_latest_checkpoint(run / "checkpoints")
    assert state is not None and state.step == 6


def test_writes_leave_no_temporary_files(run: Path) -> None:
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-000000003.pt", "step-000000006.pt",
    ]  # fmt: skip


def test_checkpoint_rebuilds_everything_from_itself(run: Path) -> None:
    state = load_checkpoint(run / "checkpoints" / "step-000000006.pt")
    assert state.step == 6 and state.config == TINY and state.spec.image_size == 8
    moments = state.opt_g.state_dict()["state"][0]
    assert moments["step"].item() == 6 and moments["exp_avg"].abs().sum() > 0


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_crafted_pickle_checkpoint_is_refused_without_running(run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = run / "checkpoints" / "step-000000099.pt"
    evil.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    state = load_latest_checkpoint(run / "checkpoints")
    assert state is not None and state.step == 6
    # the same payload inside torch's zip container is refused too
    torch.save(_Exploit(marker), evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()


def test_loading_refuses_when_weights_only_is_disabled_by_env(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        load_checkpoint(run / "checkpoints" / "step-000000006.pt")


def test_export_round_trip_serves_the_ema_generator(run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(run / "checkpoints" / "step-000000006.pt")
    description = export_generator(state, tmp_path / "export", "digits")
    loaded = load_generator(tmp_path / "export")
    assert loaded.description == description
    assert description["step"] == 6 and description["dataset"] == "digits"
    assert description["spec"]["noise_dim"] == 100 and len(description["sha256"]) == 64
    z, _ = make_noise([1, 2, 3], loaded.spec)
    assert torch.equal(generate(loaded.generator, z), generate(state.generator_ema, z))
    saved = json.loads((tmp_path / "export" / EXPORT_DESCRIPTION).read_text())
    assert saved["train_config"] == TINY.to_dict()


def test_tampered_or_pickled_generator_is_refused(run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    export_generator(load_checkpoint(run / "checkpoints" / "step-000000006.pt"), folder, "digits")
    weights = folder / EXPORT_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_generator(folder)

    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Exploit(marker))
    weights.write_bytes(evil)
    description = json.loads((folder / EXPORT_DESCRIPTION).read_text())
    description["sha256"] = hashlib.sha256(evil).hexdigest()  # even with a matching hash
    (folder / EXPORT_DESCRIPTION).write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_generator(folder)
    assert not marker.exists()


def test_missing_export_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no readable exported generator"):
        load_generator(tmp_path)


def test_save_checkpoint_prunes_to_keep(run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(run / "checkpoints" / "step-000000006.pt")
    folder = tmp_path / "ck"
    for step in range(1, 6):
        state.step = step
        save_checkpoint(state, folder, keep=2)
    assert [s for s, _ in list_checkpoints(folder)] == [4, 5]
