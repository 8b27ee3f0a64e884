"""Checkpoints (full training state) and exported generators (what gets served).

Checkpoint: one `step-000001000.pt` file per save, a dict of tensors and plain values written
with torch.save and read back only with `weights_only=True` (no code is ever unpickled).
Writes are atomic: temporary file in the same folder, fsync, os.replace, fsync of the folder.
A torn or foreign file is skipped by `load_latest_checkpoint`, which falls back to the
previous one.

Exported generator: `generator.safetensors` (EMA G's tensors) + `generator.json` (the
ModelSpec that rebuilds the network, noise spec, classes, dataset, step, sha256 of the
tensors file). The JSON is written last, so its presence marks a complete export.
"""

from __future__ import annotations

import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganserve.gan.bundle import module_tensors, read_bundle, write_bundle
from ganserve.gan.config import RESUMABLE_CHANGES, ModelSpec, TrainConfig
from ganserve.gan.errors import CheckpointError, ConfigError
from ganserve.gan.files import write_atomic
from ganserve.gan.models import Generator
from ganserve.gan.sample import transpose_dense_weights
from ganserve.gan.state import TrainState, build_state

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
EXPORT_FORMAT = "ganserve-generator"
EXPORT_FORMAT_VERSION = 1
EXPORT_NAME = "generator"
EXPORT_WEIGHTS = f"{EXPORT_NAME}.safetensors"
EXPORT_DESCRIPTION = f"{EXPORT_NAME}.json"
_CHECKPOINT_NAME = re.compile(r"^step-(\d{9})\.pt$")
_REQUIRED_KEYS = (
    "format_version",
    "step",
    "config",
    "spec",
    "generator",
    "discriminator",
    "generator_ema",
    "opt_g",
    "opt_d",
    "rng",
)


# ----------------------------------------------------------------------------- safety


def _refuse_unsafe_torch_load() -> None:
    # This variable makes torch.load ignore weights_only=True, i.e. unpickle arbitrary code.
    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "").strip() not in ("", "0"):
        raise CheckpointError(
            "refusing to load: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set, which would let "
            "torch.load run code from a checkpoint; unset it"
        )


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:09d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file in folder, oldest first (temp files ignored)."""
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _CHECKPOINT_NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def save_checkpoint(state: TrainState, folder: Path, keep: int | None = None) -> Path:
    """Write the full training state atomically; keep the newest `keep` checkpoints."""
    payload: dict[str, Any] = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "step": state.step,
        "config": state.config.to_dict(),
        "spec": state.spec.to_dict(),
        "generator": state.generator.state_dict(),
        "discriminator": state.discriminator.state_dict(),
        "generator_ema": state.generator_ema.state_dict(),
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "rng": {"noise": state.noise_rng.get_state()},
    }
    keep = state.config.keep_checkpoints if keep is None else keep
    return write_checkpoint(payload, folder, state.step, keep)


def write_checkpoint(payload: dict[str, Any], folder: Path, step: int, keep: int) -> Path:
    """`payload` saved atomically as the checkpoint of `step`; only the newest `keep` stay."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = checkpoint_path(folder, step)
    write_atomic(path, buffer.getvalue())
    for _, old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def check_resumable(folder: Path, before: TrainConfig, now: TrainConfig, same_model: bool) -> None:
    """CheckpointError unless a run checkpointed with `before` may go on with `now`."""
    old, new = before.to_dict(), now.to_dict()
    changed = sorted(k for k in new if old.get(k) != new[k] and k not in RESUMABLE_CHANGES)
    if changed or not same_model:
        raise CheckpointError(
            f"{folder} holds a run with a different config ({', '.join(changed) or 'spec'}); "
            "use a new output folder"
        )


def _upgrade(payload: dict[str, Any]) -> dict[str, Any]:
    """Bring an older checkpoint format to the current one (the one place that knows them)."""
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"unsupported checkpoint format version {version!r}; "
            f"this ganserve reads version {CHECKPOINT_FORMAT_VERSION}"
        )
    return payload


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The validated payload of one checkpoint file (tensors on the CPU)."""
    _refuse_unsafe_torch_load()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torn zip, foreign pickle, anything torch refuses
        raise CheckpointError(f"{path.name} is not a loadable checkpoint: {exc}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path.name} does not hold a checkpoint dictionary")
    missing = [key for key in _REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path.name} is missing {', '.join(missing)}")
    return _upgrade(payload)


def state_from_payload(payload: dict[str, Any], device: torch.device) -> TrainState:
    """Rebuild networks, optimizers and random streams from a checkpoint payload alone."""
    try:
        config = TrainConfig.from_dict(payload["config"])
        spec = ModelSpec.from_dict(payload["spec"])
        state = build_state(config, spec, device)
        state.generator.load_state_dict(payload["generator"])
        state.discriminator.load_state_dict(payload["discriminator"])
        state.generator_ema.load_state_dict(payload["generator_ema"])
        state.opt_g.load_state_dict(payload["opt_g"])
        state.opt_d.load_state_dict(payload["opt_d"])
        state.noise_rng.set_state(payload["rng"]["noise"])
        state.step = int(payload["step"])
    except (ConfigError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match its own description: {exc}") from exc
    return state


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> TrainState:
    return state_from_payload(read_checkpoint(path), torch.device(device))


def load_latest_checkpoint(folder: Path, device: torch.device | str = "cpu") -> TrainState | None:
    """The newest checkpoint that loads; unreadable ones are skipped with a warning."""
    for step, path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path, device)
        except CheckpointError as exc:
            log.warning("skipping checkpoint at step %d: %s", step, exc)
    return None


# ----------------------------------------------------------------------------- exports


@dataclass(frozen=True)
class LoadedGenerator:
    generator: Generator  # eval mode, on the requested device
    description: dict[str, Any]  # the generator.json contents

    @property
    def spec(self) -> ModelSpec:
        return self.generator.spec


def export_generator(state: TrainState, folder: Path, dataset: str) -> dict[str, Any]:
    """Write EMA G as safetensors + JSON description into folder; returns the description."""
    return write_bundle(
        folder,
        EXPORT_NAME,
        module_tensors(state.generator_ema),
        {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "spec": state.spec.to_dict(),
            "dataset": dataset,
            "step": state.step,
            "train_config": state.config.to_dict(),
        },
    )


def load_generator(folder: Path, device: torch.device | str = "cpu") -> LoadedGenerator:
    """Rebuild an exported generator for sampling from JSON + safetensors; verifies the hash."""
    description, tensors = read_bundle(
        folder,
        EXPORT_NAME,
        kind="exported generator",
        fmt=EXPORT_FORMAT,
        version=EXPORT_FORMAT_VERSION,
    )
    try:
        generator = Generator(ModelSpec.from_dict(description["spec"]))
        generator.load_state_dict(tensors, strict=True)
    except Exception as exc:  # wrong shapes, bad spec
        raise CheckpointError(f"cannot rebuild the generator in {folder}: {exc}") from exc
    generator = generator.to(device).eval().requires_grad_(False)
    transpose_dense_weights(generator)  # faster passes, same bits (checked there)
    return LoadedGenerator(generator, description)
