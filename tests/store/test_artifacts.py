"""Artifact paths and atomic writes."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from ganserve.store import ArtifactStore
from ganserve.store.errors import InvalidValueError, StoreError

JOB = uuid.uuid4().hex


def test_layout(artifacts: ArtifactStore) -> None:
    root = artifacts.root
    assert artifacts.job_dir(JOB) == root / "jobs" / JOB
    assert artifacts.checkpoints_dir(JOB) == root / "jobs" / JOB / "checkpoints"
    assert artifacts.preview_path(JOB) == root / "jobs" / JOB / "preview.png"
    assert artifacts.model_dir("digits-gan", 3) == root / "models" / "digits-gan" / "v3"


def test_relative_and_absolute_round_trip(artifacts: ArtifactStore) -> None:
    path = artifacts.model_dir("digits", 1) / "generator.safetensors"
    relative = artifacts.relative(path)
    assert relative == "models/digits/v1/generator.safetensors"
    assert artifacts.absolute(relative) == path


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "models/../../x", "/etc/passwd", "", "a/\x00b", "C:\\x", "..\\x"]
)
def test_absolute_refuses_escapes(artifacts: ArtifactStore, bad: str) -> None:
    with pytest.raises(StoreError):
        artifacts.absolute(bad)


def test_relative_refuses_paths_outside_root(artifacts: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="outside the artifacts dir"):
        artifacts.relative(tmp_path / "elsewhere.png")
    with pytest.raises(StoreError, match="outside the artifacts dir"):
        artifacts.relative(artifacts.root / ".." / "x")
    with pytest.raises(StoreError):
        artifacts.relative(artifacts.root)


def test_symlink_out_of_root_is_refused(artifacts: ArtifactStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    artifacts.root.mkdir(parents=True)
    (artifacts.root / "link").symlink_to(outside)
    with pytest.raises(StoreError):
        artifacts.absolute("link/secret")


@pytest.mark.parametrize("name", ["Digits", "../x", "", "a/b", ".hidden", "x" * 65])
def test_model_names_are_validated(artifacts: ArtifactStore, name: str) -> None:
    with pytest.raises(InvalidValueError, match="invalid model name"):
        artifacts.model_dir(name, 1)


def test_job_ids_and_versions_are_validated(artifacts: ArtifactStore) -> None:
    for bad in ("../x", JOB.upper(), JOB[:-1], ""):
        with pytest.raises(InvalidValueError, match="invalid job id"):
            artifacts.job_dir(bad)
    with pytest.raises(InvalidValueError, match="version"):
        artifacts.model_dir("digits", 0)


def test_write_bytes_atomic(artifacts: ArtifactStore) -> None:
    path = artifacts.preview_path(JOB)
    assert artifacts.write_bytes_atomic(path, b"first") == path
    artifacts.write_bytes_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(path.parent) == ["preview.png"]  # no temp file left


def test_write_bytes_atomic_cleans_up_on_failure(
    artifacts: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = artifacts.preview_path(JOB)
    artifacts.write_bytes_atomic(path, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        artifacts.write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(path.parent) == ["preview.png"]


def test_write_bytes_atomic_refuses_outside_root(artifacts: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        artifacts.write_bytes_atomic(tmp_path / "x.bin", b"x")


def test_remove_model_dir(artifacts: ArtifactStore) -> None:
    directory = artifacts.model_dir("digits", 2)
    artifacts.write_bytes_atomic(directory / "generator.json", b"{}")
    assert artifacts.remove_model_dir("digits", 2)
    assert not directory.exists()
    assert not artifacts.remove_model_dir("digits", 2)
