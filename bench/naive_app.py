"""The naive endpoint of issue 6, for bench/sampling.py: what a first FastAPI version writes.

    GANSERVE_BENCH_GENERATOR=<exported generator folder> uvicorn --app-dir bench naive_app:app

A plain `def` route (FastAPI runs it in its thread pool) that draws one image's noise from
its seed, runs the exported generator on that one row and encodes the PNG, per request, with
torch's default threads: no coalescing, no fixed pass shapes, no caching headers. The
service's single-PNG numbers are read against it and against the bare endpoint.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import torch
from fastapi import FastAPI, Response

from ganserve.gan.checkpoint import load_generator
from ganserve.gan.sample import encode_png, make_noise, to_uint8

GENERATOR = load_generator(Path(os.environ["GANSERVE_BENCH_GENERATOR"])).generator

app = FastAPI()


@app.get("/samples.png")
def samples_png(seed: int = 0) -> Response:
    z, _ = make_noise([seed], GENERATOR.spec)
    with torch.inference_mode():  # one forward of exactly the one row
        image = to_uint8(GENERATOR(z, None))[0]
    return Response(encode_png(image), media_type="image/png")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


gc.collect()
gc.freeze()  # as `ganserve api` and the bare app do
