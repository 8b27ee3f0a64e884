"""The HTTP stack's ceiling for bench/sampling.py: FastAPI answering one fixed 28x28 PNG.

    uvicorn --app-dir bench bare_app:app --loop uvloop --http httptools

`GET /samples.png` ignores its query string and returns the same bytes every time, through
the same uvicorn, FastAPI and `Response` the service uses, with no middleware, parameters
or dependencies: what the service would serve if generating and encoding cost nothing.
"""

from __future__ import annotations

import gc

import numpy as np
from fastapi import FastAPI, Response

from ganserve.gan.sample import encode_png


def fixed_png() -> bytes:
    """A 28x28 grey PNG with some structure (about the size of a generated digit)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[:28, :28]
    blob = 255 * np.exp(-((ys - 14) ** 2 + (xs - 14) ** 2) / 60.0)
    noisy = np.clip(blob + rng.normal(0, 20, (28, 28)), 0, 255).astype(np.uint8)
    return encode_png(noisy[:, :, None])


PNG = fixed_png()

app = FastAPI()


@app.get("/samples.png")
async def samples_png() -> Response:
    return Response(PNG, media_type="image/png")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


gc.collect()
gc.freeze()  # as `ganserve api` does: no long full garbage collections
