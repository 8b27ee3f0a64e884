"""The sampling hot path's pieces, each against what it replaced, in alternated rounds (issue 18).

    python bench/hot_path.py [--rounds 15]

Every pair runs in one process, round by round (A, B, A, B, ...), and prints the median CPU
time per call of the calling thread (`time.thread_time`; the batcher pair: of the process,
since its work hops to a pool thread), with min and max over the rounds:

- PNG of one 28x28 digit-like image: Pillow's `Image.save` (`gan.png.pillow_png`) against
  `gan.png.encode_png` (the same bytes, checked here too);
- a 4-row pass of the reference MLP (28x28) with nn.Linear's stored layout against the
  transposed one (`gan.sample.transpose_dense_weights`), both called through nn.Module;
- the same pass through nn.Module's call against `Generator.forward_unhooked` (both
  transposed);
- a lone item through `service.sampling.batching.Batcher` (no-op work) against a bare
  `loop.run_in_executor` of the same work: what coalescing costs a lone request;
- an `async def (name, request) -> Response` route as FastAPI's APIRoute against
  `service.routes.direct.DirectRoute`, called in-process over ASGI.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import uvloop
from fastapi import APIRouter, FastAPI, Request, Response
from starlette.types import Message

from ganserve.gan import png
from ganserve.gan.config import ModelSpec
from ganserve.gan.models import Generator
from ganserve.gan.sample import transpose_dense_weights
from ganserve.service.routes.direct import DirectRoute
from ganserve.service.sampling.batching import Batcher

REFERENCE = ModelSpec("mlp", 1, 28, 100, "normal")


def alternate(
    rounds: int, calls: int, pair: dict[str, Callable[[], Any]], clock: Callable[[], float]
) -> dict[str, list[float]]:
    """us per call of each contender, one measurement per round, contenders alternated."""
    spent: dict[str, list[float]] = {name: [] for name in pair}
    for function in pair.values():
        for _ in range(max(calls // 10, 5)):  # warm-up
            function()
    for _ in range(rounds):
        for name, function in pair.items():
            start = clock()
            for _ in range(calls):
                function()
            spent[name].append((clock() - start) / calls * 1e6)
    return spent


def report(title: str, spent: dict[str, list[float]]) -> None:
    print(title)
    medians = {name: statistics.median(values) for name, values in spent.items()}
    for name, values in spent.items():
        print(
            f"  {name:>34}: median {medians[name]:7.1f} us "
            f"(min {min(values):.1f}, max {max(values):.1f})"
        )
    before, after = medians.values()
    print(f"  {'ratio':>34}: {after / before:.2f}")


def digit_like() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.zeros((28, 28, 1), np.uint8)
    image[5:23, 9:19] = rng.integers(0, 256, (18, 10, 1), dtype=np.uint8)
    return image


def asgi_get(app: FastAPI, path: str) -> Callable[[], Any]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"seed=1",
        "root_path": "", "headers": [(b"host", b"bench")], "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }  # fmt: skip

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    async def call() -> None:
        await app(dict(scope), receive, send)

    return call


def route_app() -> FastAPI:
    async def endpoint(name: str, request: Request) -> Response:
        return Response(b"\x89PNG", media_type="image/png", headers={"X-Model-Name": name})

    app = FastAPI()
    app.add_api_route("/api/{name}/x.png", endpoint, methods=["GET"])
    direct = APIRouter()
    direct.add_api_route(
        "/direct/{name}/x.png", endpoint, methods=["GET"], route_class_override=DirectRoute
    )
    app.include_router(direct)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; {args.rounds} alternated rounds per pair")

    image = digit_like()
    assert png.encode_png(image) == png.pillow_png(image)
    report(
        "one 28x28 PNG (same bytes)",
        alternate(args.rounds, 2000, {
            "Pillow Image.save": lambda: png.pillow_png(image),
            "gan.png.encode_png": lambda: png.encode_png(image),
        }, time.thread_time),
    )  # fmt: skip

    torch.manual_seed(0)
    stored = Generator(REFERENCE).eval().requires_grad_(False)
    transposed = copy.deepcopy(stored)
    assert transpose_dense_weights(transposed) == 4
    z = torch.randn(4, REFERENCE.noise_dim)
    with torch.inference_mode():
        assert torch.equal(stored(z), transposed(z))
        assert torch.equal(transposed(z), transposed.forward_unhooked(z))
        report(
            "a 4-row pass of the reference MLP: weight layout (same bits)",
            alternate(args.rounds, 50, {
                "nn.Linear's (out, in) layout": lambda: stored(z),
                "transposed (in, out) in memory": lambda: transposed(z),
            }, time.thread_time),
        )  # fmt: skip
        report(
            "the same pass: how the layers are called (same bits)",
            alternate(args.rounds, 50, {
                "nn.Module calls": lambda: transposed(z),
                "Generator.forward_unhooked": lambda: transposed.forward_unhooked(z),
            }, time.thread_time),
        )  # fmt: skip

    async def hops() -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()

        def work(items: Any) -> list[int]:
            return [1 for _ in items]

        batcher: Batcher[int, int] = Batcher(work, rows=lambda _: 1, max_rows=64, max_wait_s=0.002)
        spent: dict[str, list[float]] = {"run_in_executor (no batching)": [], "Batcher": []}
        contenders = {
            "run_in_executor (no batching)": lambda: loop.run_in_executor(None, work, [1]),
            "Batcher": lambda: batcher.submit(1),
        }
        for _ in range(args.rounds + 1):  # the first round warms up
            for name, submit in contenders.items():
                start = time.process_time()
                for _ in range(1000):
                    await submit()
                spent[name].append((time.process_time() - start) * 1000)
        return {name: values[1:] for name, values in spent.items()}

    report("a lone request's hop to a thread and back (process CPU)", uvloop.run(hops()))

    app = route_app()
    api, direct = asgi_get(app, "/api/m/x.png"), asgi_get(app, "/direct/m/x.png")

    async def routes() -> dict[str, list[float]]:
        spent: dict[str, list[float]] = {"APIRoute": [], "DirectRoute": []}
        for _ in range(args.rounds + 1):
            for name, call in (("APIRoute", api), ("DirectRoute", direct)):
                start = time.thread_time()
                for _ in range(2000):
                    await call()
                spent[name].append((time.thread_time() - start) / 2000 * 1e6)
        return {name: values[1:] for name, values in spent.items()}

    report("an async (name, request) route, in-process ASGI", uvloop.run(routes()))


if __name__ == "__main__":
    main()
