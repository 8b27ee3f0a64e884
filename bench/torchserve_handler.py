"""TorchServe's side of bench/vs_torchserve.py: a custom handler serving an exported generator.

What a TorchServe user writes for "a PNG of this generator for a seed": the archive carries the
exported generator (`generator.safetensors` + `generator.json`, as ganserve exports it) and this
handler; a request is a JSON body `{"seed": S}` (one 28x28 PNG) or `{"seed": S, "n": 64}` (a grid
of seeds S..S+63, 8 per row); the answer is the PNG's bytes. Noise, forward and encoding are
what a script writes with ganserve's `gan` library: the seed's noise (`make_noise`, seeded CPU
generator), one forward of exactly the images asked for, uint8, `make_grid` and `encode_png`
(Pillow), so both servers do the same work per image; only serving differs.

It runs in TorchServe's Python worker, which is not the project's venv: `GANSERVE_SRC` (set by
the benchmark in TorchServe's environment) is the project's `src` folder, put on `sys.path`.
TorchServe's defaults are kept: one request per call (batch size 1), torch's default threads
(unless `GANSERVE_BENCH_TS_THREADS` is set: the benchmark's 1-thread variant).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

sys.path.insert(0, os.environ["GANSERVE_SRC"])

from ganserve.gan.checkpoint import load_generator  # noqa: E402
from ganserve.gan.models import Generator  # noqa: E402
from ganserve.gan.sample import encode_png, make_grid, make_noise, to_uint8  # noqa: E402

log = logging.getLogger(__name__)

MAX_N = 64  # images per request


def plain_png(generator: Generator, seeds: range) -> bytes:
    """Noise of the seeds, one forward of exactly those rows, the PNG (8 images per grid row)."""
    z, _ = make_noise(seeds, generator.spec)
    with torch.inference_mode():
        images = to_uint8(generator(z))  # (N, H, W, C) uint8
    return encode_png(images[0] if len(seeds) == 1 else make_grid(images, 8))


class GeneratorHandler(BaseHandler):
    """JSON {"seed", "n"} in, PNG bytes out."""

    def initialize(self, context: Any) -> None:
        folder = Path(context.system_properties["model_dir"])
        if os.environ.get("GANSERVE_BENCH_TS_THREADS"):  # the benchmark's 1-thread variant
            torch.set_num_threads(int(os.environ["GANSERVE_BENCH_TS_THREADS"]))
        self.generator: Generator = load_generator(folder, "cpu").generator
        self.initialized = True
        log.info("ganserve bench handler: torch threads %d", torch.get_num_threads())

    def preprocess(self, data: list[dict[str, Any]]) -> list[tuple[int, int]]:
        requests = []
        for row in data:
            raw = row.get("body") or row.get("data") or {}
            body: dict[str, Any] = json.loads(raw) if isinstance(raw, (bytes, bytearray)) else raw
            seed, n = int(body.get("seed", 0)), int(body.get("n", 1))
            if not (0 <= seed < 2**63 - MAX_N and 1 <= n <= MAX_N):
                raise ValueError(f"seed {seed} or n {n} out of range")
            requests.append((seed, n))
        return requests

    def inference(self, data: list[tuple[int, int]], *args: Any, **kwargs: Any) -> list[bytes]:
        return [plain_png(self.generator, range(seed, seed + n)) for seed, n in data]

    def postprocess(self, data: list[bytes]) -> list[bytes]:
        return data
