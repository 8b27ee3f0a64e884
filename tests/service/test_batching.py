"""Coalesced sampling: one batch, one forward, the same bytes as alone; errors and cancellation
stay with their own request. The Batcher alone first, then the API under concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import torch
from fastapi import FastAPI

from ganserve.gan import sample as pipeline
from ganserve.service.app import create_app
from ganserve.service.context import AppContext
from ganserve.service.sampling.batching import Batcher, Batchers, BatchStats
from ganserve.service.sampling.generator_cache import CachedGenerator, GeneratorCache
from ganserve.settings import Settings
from ganserve.store import Store
from tests.service.trained_model import register_model

# ----------------------------------------------------------------------------- the Batcher


class Recorder:
    """A `run` function for a Batcher: records its batches; item < 0 fails that item alone."""

    def __init__(self, delay_s: float = 0.0, fail_batch: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.fail_batch = fail_batch
        self.started = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.started.set()
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.fail_batch:
            raise RuntimeError("the whole batch failed")
        return [ValueError(f"bad item {i}") if i < 0 else i * 10 for i in items]


def batcher(run: Recorder, max_rows: int = 100, **kwargs: Any) -> Batcher[int, int]:
    return Batcher(run, rows=lambda item: max(abs(item), 1), max_rows=max_rows, **kwargs)


def test_concurrent_items_run_as_one_batch_in_a_thread() -> None:
    run = Recorder()
    coalescer = batcher(run)

    async def main() -> tuple[list[int], str]:
        results = await asyncio.gather(*(coalescer.submit(i) for i in range(1, 11)))
        return results, threading.current_thread().name

    results, loop_thread = anyio.run(main)
    assert results == [i * 10 for i in range(1, 11)]
    assert run.batches == [list(range(1, 11))]
    assert loop_thread not in run.threads
    assert coalescer.stats == BatchStats(batches=1, items=10, rows=55, largest=10)
    assert coalescer.idle


def test_items_arriving_during_a_batch_form_the_next_one() -> None:
    run = Recorder(delay_s=0.05)
    coalescer = batcher(run)

    async def main() -> list[int]:
        first = asyncio.ensure_future(coalescer.submit(1))
        await asyncio.to_thread(run.started.wait)  # batch [1] is running
        later = [coalescer.submit(i) for i in range(2, 6)]
        return [await first, *await asyncio.gather(*later)]

    assert anyio.run(main) == [10, 20, 30, 40, 50]
    assert run.batches == [[1], [2, 3, 4, 5]]


def test_max_rows_caps_a_batch_but_never_splits_an_item() -> None:
    run = Recorder()
    coalescer = batcher(run, max_rows=7)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(coalescer.submit(i) for i in (3, 3, 3, 20, 1))))

    assert anyio.run(main) == [30, 30, 30, 200, 10]
    assert run.batches == [[3, 3], [3], [20], [1]]


def test_a_second_batch_runs_at_once_only_when_full() -> None:
    run = Recorder(delay_s=0.1)
    coalescer = batcher(run, max_rows=4, max_batches=2)

    async def main() -> float:
        first = asyncio.ensure_future(coalescer.submit(1))
        await asyncio.to_thread(run.started.wait)  # batch [1] is running
        start = time.perf_counter()
        await asyncio.gather(coalescer.submit(2), coalescer.submit(2))  # full: runs beside [1]
        parallel = time.perf_counter() - start
        await first
        return parallel

    assert anyio.run(main) < 0.19  # not after [1]'s 0.1 s plus its own
    assert run.batches == [[1], [2, 2]] and len(run.threads) == 2

    partial = Recorder(delay_s=0.05)
    coalescer = batcher(partial, max_rows=4, max_batches=2)

    async def not_full() -> None:
        first = asyncio.ensure_future(coalescer.submit(1))
        await asyncio.to_thread(partial.started.wait)
        await asyncio.gather(coalescer.submit(1), coalescer.submit(1), first)

    anyio.run(not_full)
    assert partial.batches == [[1], [1, 1]]  # waited for [1]: one batch at a time


def test_a_failing_item_fails_alone() -> None:
    run = Recorder()
    coalescer = batcher(run)

    async def main() -> list[int | BaseException]:
        return list(
            await asyncio.gather(*(coalescer.submit(i) for i in (1, -2, 3)), return_exceptions=True)
        )

    first, failed, third = anyio.run(main)
    assert (first, third) == (10, 30)
    assert isinstance(failed, ValueError) and "bad item -2" in str(failed)
    assert len(run.batches) == 1


def test_a_failing_batch_fails_its_items_and_the_batcher_goes_on() -> None:
    run = Recorder(fail_batch=True)
    coalescer = batcher(run)

    async def main() -> tuple[list[int | BaseException], int]:
        failed = await asyncio.gather(
            *(coalescer.submit(i) for i in (1, 2)), return_exceptions=True
        )
        run.fail_batch = False
        return list(failed), await coalescer.submit(3)

    failed, after = anyio.run(main)
    assert all(isinstance(e, RuntimeError) for e in failed)
    assert after == 30


def test_a_cancelled_waiter_leaves_its_batch_and_the_others_are_served() -> None:
    run = Recorder(delay_s=0.05)
    coalescer = batcher(run)

    async def main() -> tuple[list[int], bool, bool]:
        running = asyncio.ensure_future(coalescer.submit(1))
        await asyncio.to_thread(run.started.wait)
        queued = [asyncio.ensure_future(coalescer.submit(i)) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        queued[1].cancel()  # 3 waits behind batch [1]: it never runs
        running.cancel()  # 1 is in the running batch: its result is dropped
        done = await asyncio.gather(queued[0], queued[2])
        return list(done), queued[1].cancelled(), running.cancelled()

    done, cancelled_queued, cancelled_running = anyio.run(main)
    assert done == [20, 40] and cancelled_queued and cancelled_running
    assert run.batches == [[1], [2, 4]]
    assert coalescer.idle


def test_a_lone_item_is_not_delayed() -> None:
    async def lone(coalescer: Batcher[int, int]) -> float:
        start = time.perf_counter()
        await coalescer.submit(1)
        return time.perf_counter() - start

    assert anyio.run(lone, batcher(Recorder())) < 0.2  # no timer involved (generous for CI)
    assert anyio.run(lone, batcher(Recorder(), max_wait_s=5.0)) < 0.2  # nothing to expect


def test_the_linger_waits_for_as_many_items_as_the_last_batch_had() -> None:
    run = Recorder()
    coalescer = batcher(run, max_wait_s=0.3)

    async def main() -> tuple[float, float, float]:
        await asyncio.gather(*(coalescer.submit(i) for i in (1, 2, 3)))  # expect 3 from now on
        start = time.perf_counter()
        late = [asyncio.ensure_future(coalescer.submit(4))]
        await asyncio.sleep(0.05)
        late += [asyncio.ensure_future(coalescer.submit(i)) for i in (5, 6)]  # the third: go
        await asyncio.gather(*late)
        whole = time.perf_counter() - start
        start = time.perf_counter()
        await coalescer.submit(7)  # alone: expected 3, waits the whole linger
        alone = time.perf_counter() - start
        start = time.perf_counter()
        await coalescer.submit(8)  # the last batch had 1: no wait
        return whole, alone, time.perf_counter() - start

    whole, alone, again = anyio.run(main)
    assert run.batches == [[1, 2, 3], [4, 5, 6], [7], [8]]
    assert 0.05 <= whole < 0.25 and alone >= 0.3 and again < 0.2


def test_the_linger_ends_when_max_rows_are_queued() -> None:
    run = Recorder()
    capped = batcher(run, max_rows=10, max_wait_s=5.0)

    async def main() -> float:
        await asyncio.gather(*(capped.submit(1) for _ in range(4)))  # expect 4
        start = time.perf_counter()
        await asyncio.gather(capped.submit(5), capped.submit(5))  # 10 rows: full
        return time.perf_counter() - start

    assert anyio.run(main) < 0.25
    assert run.batches == [[1, 1, 1, 1], [5, 5]]


def test_batchers_are_made_per_key_and_forgotten_when_idle() -> None:
    registry = Batchers()
    runs: dict[str, Recorder] = {"a": Recorder(), "b": Recorder()}

    def get(key: str) -> Batcher[int, int]:
        return registry.get(key, lambda stats: batcher(runs[key], stats=stats))

    async def main() -> list[int]:
        first, second = get("a"), get("b")
        assert get("a") is first and first is not second and len(registry) == 2
        return list(await asyncio.gather(first.submit(1), second.submit(2), first.submit(3)))

    assert anyio.run(main) == [10, 20, 30]
    assert runs["a"].batches == [[1, 3]] and runs["b"].batches == [[2]]
    assert len(registry) == 0  # idle batchers are dropped: keys come from requests
    assert registry.stats.batches == 2 and registry.stats.items == 3


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        batcher(Recorder(), max_rows=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        batcher(Recorder(), max_wait_s=-1)
    with pytest.raises(ValueError, match="max_batches"):
        batcher(Recorder(), max_batches=0)


# ----------------------------------------------------------------------------- the API


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, and an async client calling it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    """An app whose store has `digits` (unconditional) and `cdigits` (conditional)."""
    store = Store.from_settings(settings)
    try:
        register_model(store, "digits")
        register_model(store, "cdigits", conditional=True)
    finally:
        store.close()
    yield create_app(settings)


def generators(app: FastAPI) -> GeneratorCache:
    cache: GeneratorCache = app.state.context.generators
    return cache


def batch_stats(app: FastAPI) -> BatchStats:
    context: AppContext = app.state.context
    return context.batchers.stats


URL = "/v1/models/{}/samples.png"
CASES: list[tuple[str, dict[str, Any]]] = [
    ("digits", {"seed": 1}),
    ("digits", {"seed": 2}),
    ("digits", {"seed": 3, "truncation": 0.7}),
    ("digits", {"seed": 4, "n": 9, "nrow": 4}),
    ("digits", {"seed": 5, "scale": 3}),
    ("digits", {"seed": 6, "n": 70}),  # a wide pass and more
    ("cdigits", {"seed": 1, "label": 3}),
    ("cdigits", {"seed": 1, "label": 4, "truncation": 0.5}),
    ("cdigits", {"seed": 2}),  # the label drawn from the seed
    ("cdigits", {"seed": 7, "n": 5, "label": 9, "scale": 2}),
    ("digits", {"seed": 1, "version": "1"}),
    ("digits", {"seed": 8, "n": 2}),
]


async def get(client: httpx.AsyncClient, name: str, params: dict[str, Any]) -> httpx.Response:
    return await client.get(URL.format(name), params=params)


def test_coalesced_pngs_are_byte_identical_to_pngs_made_alone(app: FastAPI) -> None:
    async def main() -> tuple[list[bytes], list[bytes], BatchStats]:
        async with running(app) as client:
            for name in ("digits", "cdigits"):  # load both, so the burst is all cache hits
                assert (await get(client, name, {})).status_code == 200
            before = batch_stats(app).batches
            burst = await asyncio.gather(*(get(client, name, p) for name, p in CASES * 3))
            batches = batch_stats(app).batches - before
            alone = [await get(client, name, params) for name, params in CASES]
            stats = batch_stats(app)
        assert all(r.status_code == 200 for r in [*burst, *alone])
        assert batches < len(burst) and stats.largest >= len(CASES)
        return [r.content for r in burst], [r.content for r in alone], stats

    burst, alone, stats = anyio.run(main)
    assert burst == alone * 3
    assert len(set(alone)) == len(alone) - 1  # all different but `version=1`, the same as seed 1


def test_coalesced_pngs_equal_the_cli_pipeline_without_any_batching(app: FastAPI) -> None:
    """The reference: gan.sample.sample_png (what `ganserve sample` writes), one request,
    nothing batched (forced to 16-row passes for half of them: every exact pass size gives
    the same bits)."""

    async def main() -> list[bytes]:
        async with running(app) as client:
            responses = await asyncio.gather(*(get(client, name, p) for name, p in CASES))
            cache = generators(app)
            cached = {name: await cache.get(name, "latest") for name in ("digits", "cdigits")}
        expected = []
        for i, (name, params) in enumerate(CASES):
            narrow = i % 2 == 0
            expected.append(render_alone(cached[name], params, narrow=narrow))
        assert [r.content for r in responses] == expected
        return expected

    anyio.run(main)


def render_alone(cached: CachedGenerator, params: dict[str, Any], *, narrow: bool) -> bytes:
    n = params.get("n", 1)
    seed = params["seed"]
    label = params.get("label")
    labels = None if label is None else [label] * n

    def render() -> bytes:
        return pipeline.sample_png(
            cached.generator,
            list(range(seed, seed + n)),
            labels=labels,
            truncation=params.get("truncation"),
            nrow=params.get("nrow"),
            scale=params.get("scale", 1),
        )

    if not narrow:
        return render()
    checked = pipeline._exact.setdefault(cached.generator, {})
    threads = torch.get_num_threads()
    saved = checked.get(threads)
    checked[threads] = (pipeline.REFERENCE_ROWS,)
    try:
        return render()
    finally:
        if saved is None:
            checked.pop(threads)
        else:
            checked[threads] = saved


def test_concurrent_requests_share_forward_passes(app: FastAPI) -> None:
    async def main() -> tuple[int, int]:
        async with running(app) as client:
            assert (await get(client, "digits", {})).status_code == 200
            cached = await generators(app).get("digits", "latest")
            calls: list[int] = []
            hook = cached.generator.register_forward_hook(lambda *_: calls.append(1))
            try:
                responses = await asyncio.gather(
                    *(get(client, "digits", {"seed": s}) for s in range(40))
                )
            finally:
                hook.remove()
        assert all(r.status_code == 200 for r in responses)
        return len(calls), len(responses)

    passes, requests = anyio.run(main)
    assert passes < requests / 4  # 40 requests alone: 40 passes


def test_a_request_heavier_than_a_batch_runs_on_its_own(app: FastAPI) -> None:
    heavy = [("digits", {"seed": 0, "n": 100}), ("digits", {"seed": 9, "scale": 9})]  # 100, 81

    async def main() -> None:
        async with running(app) as client:
            assert (await get(client, "digits", {})).status_code == 200
            stats = batch_stats(app)
            items = stats.items
            mixed = [*heavy, *(("digits", {"seed": s}) for s in range(10))]
            together = await asyncio.gather(*(get(client, name, p) for name, p in mixed))
            assert stats.items - items == 10  # the heavy two took their own trips
            alone = [await get(client, name, params) for name, params in mixed]
        assert [r.status_code for r in together] == [200] * len(mixed)
        assert [r.content for r in together] == [r.content for r in alone]

    anyio.run(main)


def test_errors_stay_with_their_request(app: FastAPI) -> None:
    bad = [
        ("cdigits", {"seed": 1, "label": 10}, 422, "label"),  # not a class of the model
        ("digits", {"seed": 1, "label": 1}, 422, "label"),  # the model is not conditional
        ("faces", {"seed": 1}, 404, "name"),  # no such model
        ("digits", {"seed": 1, "version": "7"}, 404, "version"),  # no such version
        ("digits", {"seed": 1, "n": 0}, 422, "n"),  # refused before batching
        ("digits", {"seed": 1, "scale": 10_000}, 413, "scale"),
    ]

    async def main() -> None:
        async with running(app) as client:
            alone = [await get(client, name, params) for name, params in CASES]
            mixed = [*((name, p) for name, p, _, _ in bad), *CASES]
            responses = await asyncio.gather(*(get(client, name, p) for name, p in mixed))
        for (_, _, status, field), response in zip(bad, responses, strict=False):
            assert response.status_code == status, response.text
            assert response.json()["field"] == field
        good = responses[len(bad) :]
        assert [r.status_code for r in good] == [200] * len(CASES)
        assert [r.content for r in good] == [r.content for r in alone]

    anyio.run(main)


def test_not_modified_inside_a_batch(app: FastAPI) -> None:
    async def main() -> None:
        async with running(app) as client:
            first = await get(client, "digits", {"seed": 3})
            etag = first.headers["etag"]
            cached, fresh = await asyncio.gather(
                client.get(
                    URL.format("digits"), params={"seed": 3}, headers={"If-None-Match": etag}
                ),
                get(client, "digits", {"seed": 4}),
            )
        assert cached.status_code == 304 and cached.content == b""
        assert cached.headers["etag"] == etag and cached.headers["x-model-version"] == "1"
        assert fresh.status_code == 200 and fresh.headers["etag"] != etag

    anyio.run(main)


def test_first_concurrent_requests_load_the_generator_once(app: FastAPI) -> None:
    async def main() -> None:
        async with running(app) as client:
            responses = await asyncio.gather(
                *(get(client, "digits", {"seed": s}) for s in range(6))
            )
            again = [await get(client, "digits", {"seed": s}) for s in range(6)]
        assert [r.status_code for r in responses] == [200] * 6
        assert [r.content for r in responses] == [r.content for r in again]
        assert generators(app).loads == 1

    anyio.run(main)


def test_a_cancelled_request_does_not_break_its_batch(app: FastAPI) -> None:
    async def main() -> None:
        async with running(app) as client:
            alone = [(await get(client, "digits", {"seed": s})).content for s in range(8)]
            tasks = [asyncio.ensure_future(get(client, "digits", {"seed": s})) for s in range(8)]
            await asyncio.sleep(0)
            tasks[3].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(results[3], asyncio.CancelledError)
            served = [r for i, r in enumerate(results) if i != 3]
            assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in served)
            assert [r.content for r in served if isinstance(r, httpx.Response)] == [
                body for i, body in enumerate(alone) if i != 3
            ]
            assert (await get(client, "digits", {"seed": 3})).content == alone[3]

    anyio.run(main)
