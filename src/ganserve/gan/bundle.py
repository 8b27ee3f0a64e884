"""Tensor bundles: `<name>.safetensors` + `<name>.json`, the format of everything we serve.

The JSON describes how to rebuild the module (format, format version, its own fields) and
records the sha256 of the tensors file; it is written last, so its presence marks a complete
bundle. Reading checks format, version and hash before parsing any tensor, and never
unpickles anything (safetensors is a header plus raw bytes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from ganserve.gan.errors import CheckpointError
from ganserve.gan.files import write_atomic


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict as contiguous CPU tensors, ready for safetensors."""
    return {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}


def write_bundle(
    folder: Path, name: str, tensors: bytes | dict[str, torch.Tensor], description: dict[str, Any]
) -> dict[str, Any]:
    """Write the tensors, then the description with their sha256 added; returns it."""
    weights = tensors if isinstance(tensors, bytes) else safetensors.torch.save(tensors)
    description = {**description, "sha256": hashlib.sha256(weights).hexdigest()}
    write_atomic(folder / f"{name}.safetensors", weights)
    write_atomic(folder / f"{name}.json", json.dumps(description, indent=2).encode())
    return description


def read_bundle(
    folder: Path, name: str, *, kind: str, fmt: str, version: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(description, tensors) of a bundle; CheckpointError naming what is wrong."""
    description_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    try:
        description = json.loads(description_path.read_text())
        weights = weights_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"no readable {kind} in {folder}: {exc}") from exc
    if not isinstance(description, dict) or description.get("format") != fmt:
        raise CheckpointError(f"{description_path} is not a ganserve {kind}")
    if description.get("format_version") != version:
        raise CheckpointError(
            f"unsupported {kind} format version {description.get('format_version')!r}; "
            f"this ganserve reads version {version}"
        )
    if hashlib.sha256(weights).hexdigest() != description.get("sha256"):
        raise CheckpointError(f"{weights_path} does not match its recorded sha256")
    try:
        tensors = safetensors.torch.load(weights)
    except Exception as exc:  # a malformed header: not a safetensors file
        raise CheckpointError(f"cannot rebuild the {kind} in {folder}: {exc}") from exc
    return description, tensors
