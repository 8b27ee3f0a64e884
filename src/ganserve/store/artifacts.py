"""Files under the artifacts dir: job checkpoints and previews, exported model versions.

Layout (relative to the root):

    jobs/<job_id>/checkpoints/   training checkpoints (written by the worker)
    jobs/<job_id>/preview.png    the latest fixed-noise sample grid
    models/<name>/v<version>/    an exported generator (weights + JSON description)

Paths stored in the database are relative to the root, in POSIX form. `absolute()` and
`relative()` refuse anything that would leave the root.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath

from ganserve.gan.files import write_atomic
from ganserve.store.errors import InvalidValueError, StoreError
from ganserve.store.names import validate_job_id, validate_model_name


class ArtifactStore:
    """Paths and atomic writes under one root folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / validate_job_id(job_id)

    def checkpoints_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "checkpoints"

    def preview_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "preview.png"

    def model_dir(self, name: str, version: int) -> Path:
        validate_model_name(name)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidValueError("version", f"must be a positive integer, got {version!r}")
        return self.root / "models" / name / f"v{version}"

    def relative(self, path: Path | str) -> str:
        """`path` (absolute, or relative to the current dir) as a POSIX path under the root."""
        resolved = Path(path).expanduser().resolve()
        try:
            inner = resolved.relative_to(self.root)
        except ValueError:
            raise StoreError(f"path {str(path)!r} is outside the artifacts dir {self}") from None
        if inner == Path("."):
            raise StoreError(f"path {str(path)!r} is the artifacts dir itself, not a file in it")
        return inner.as_posix()

    def absolute(self, relative: str) -> Path:
        """The absolute path of a stored relative path; refuses absolute paths and `..`."""
        if not relative or "\x00" in relative:
            raise StoreError(f"invalid artifact path {relative!r}")
        posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
        if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
            raise StoreError(f"artifact path {relative!r} must be relative to the artifacts dir")
        if ".." in posix.parts or ".." in windows.parts:
            raise StoreError(f"artifact path {relative!r} must not contain '..'")
        path = (self.root / posix).resolve()
        # Also catches symlinks inside the root that point out of it.
        if path != self.root and self.root not in path.parents:
            raise StoreError(f"artifact path {relative!r} leads outside the artifacts dir")
        return path

    def write_bytes_atomic(self, path: Path | str, data: bytes) -> Path:
        """Write `data` to `path` under the root: temp file, fsync, rename, fsync the dir.

        Readers see the old file or the new one, never a torn one. Returns the path.
        """
        target = self.absolute(self.relative(path))
        write_atomic(target, data)
        return target

    def remove_model_dir(self, name: str, version: int) -> bool:
        """Delete a version's files; False if there were none."""
        path = self.model_dir(name, version)
        if not path.exists():
            return False
        shutil.rmtree(path)
        return True
