"""Tiny trained generators, registered straight into an API's store (no worker needed).

Training takes about a second, so each kind is trained once per test process
(`exported_generator` is cached) and its export copied into every store that registers it,
the way the worker lays it out: `<artifacts>/jobs/<job id>/generator/`.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from ganserve.gan.checkpoint import EXPORT_DESCRIPTION, export_generator
from ganserve.gan.config import TrainConfig
from ganserve.gan.data import load_digits
from ganserve.gan.train import train
from ganserve.service.sampling.generator_cache import GeneratorCache
from ganserve.store import ModelVersion, Store, jobs, registry

TRAIN_STEPS = 20


@functools.cache
def exported_generator(conditional: bool = False, seed: int = 0) -> Path:
    """A folder holding an exported digits generator (8x8, 1 channel), trained once."""
    root = Path(tempfile.mkdtemp(prefix="ganserve-test-generator-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    config = TrainConfig(
        steps=TRAIN_STEPS,
        batch_size=32,
        device="cpu",
        conditional=conditional,
        seed=seed,
        checkpoint_every=TRAIN_STEPS,
        sample_every=TRAIN_STEPS,
    )
    result = train(config, load_digits(), root / "run")
    export_generator(result.state, root / "generator", "digits")
    return root / "generator"


@functools.cache
def legacy_generator(conditional: bool = False, seed: int = 0) -> Path:
    """The same export as a model exported before sampling contracts were numbered: its spec
    without `sampling_contract` (so it reads as contract 1). The weights are unchanged."""
    root = Path(tempfile.mkdtemp(prefix="ganserve-test-legacy-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    folder = root / "generator"
    shutil.copytree(exported_generator(conditional, seed), folder)
    description = json.loads((folder / EXPORT_DESCRIPTION).read_text())
    del description["spec"]["sampling_contract"]
    (folder / EXPORT_DESCRIPTION).write_text(json.dumps(description, indent=2))
    return folder


def register_model(
    store: Store, name: str, *, conditional: bool = False, seed: int = 0, legacy: bool = False
) -> ModelVersion:
    """A job row + a copy of the export in its job dir + the next version of `name`.

    legacy: the export as written before sampling contracts were numbered (contract 1).
    """
    source = (legacy_generator if legacy else exported_generator)(conditional, seed)
    description: dict[str, Any] = json.loads((source / EXPORT_DESCRIPTION).read_text())
    with store.session() as session:
        spec = {"name": name, "dataset": "digits", "conditional": conditional, "seed": seed}
        job = jobs.create_job(session, name, spec, total_steps=TRAIN_STEPS)
        folder = store.artifacts.job_dir(job.id) / "generator"
        shutil.copytree(source, folder)
        return registry.register_version(
            session,
            name,
            job.id,
            int(description["step"]),
            store.artifacts.relative(folder),
            description,
            metrics={},
        )


def app_store(client: TestClient) -> Store:
    store: Store = client.app.state.context.store  # type: ignore[attr-defined]
    return store


def app_cache(client: TestClient) -> GeneratorCache:
    cache: GeneratorCache = client.app.state.context.generators  # type: ignore[attr-defined]
    return cache


def pixels(png: bytes) -> np.ndarray:
    """A PNG's pixels as (H, W) uint8 (grey) or (H, W, C)."""
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image)
