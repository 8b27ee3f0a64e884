"""The digits quality classifier, trained once per test process and copied where needed.

Workers train it on first use and cache it under `<artifacts>/classifiers/<dataset hash>`;
copying a trained one into a fresh data dir saves every test that runs a job those seconds.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from ganserve.gan.classifier import classifier_for
from ganserve.gan.data import load_digits


@functools.cache
def trained_classifiers() -> Path:
    root = Path(tempfile.mkdtemp(prefix="ganserve-test-classifiers-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    classifier_for(load_digits(), root / "classifiers")
    return root / "classifiers"


def seed_classifiers(data_dir: Path) -> None:
    """Put the trained digits classifier in data_dir's artifact store (as a worker would)."""
    shutil.copytree(trained_classifiers(), data_dir / "artifacts" / "classifiers",
                    dirs_exist_ok=True)  # fmt: skip
