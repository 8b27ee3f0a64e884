"""Coalescing concurrent requests into one trip to the thread pool (DESIGN §8, §11).

A `Batcher` collects the items (sampling requests) submitted to it on the event loop and runs
them as ONE call of its `run` function in a worker thread, which returns one outcome per
item: a result, or the exception that item alone failed with. The thread hop, the registry
read and the generator forward are paid once per batch, not once per request.

Opportunistic: a request never waits for a timer it does not need.

- An idle batcher dispatches on the next turn of the event loop, so requests that arrived in
  the same turn (one `epoll` wake-up of the server) share a batch.
- While a batch runs in the pool, new items queue; when it finishes, everything queued (up
  to `max_rows`) is the next batch. Under load batches grow to match the load, by themselves.
- `max_wait_s` > 0 adds an adaptive linger: before starting a batch while none runs, wait up
  to that long for as many items as were in flight when the last batch ended (or for
  `max_rows` rows). Clients that got their answers come back with their next requests at
  about the same time, so batches stay whole instead of splitting into groups that each pay
  a forward pass. A lone client's last batch had one item: it never waits.

One batch runs at a time per batcher, so small requests share forwards instead of fighting
over the cores in parallel ones; a second (up to `max_batches`) starts only when a full batch
(`max_rows` rows) is waiting: large requests (64-image grids) then use more than one core.
Items are never split: one item of more than `max_rows` rows runs alone.

Cancellation: an item whose waiter is cancelled before its batch starts is dropped from it;
after it started, the item's result is discarded. Neither disturbs the other items.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

log = logging.getLogger(__name__)

T = TypeVar("T")  # an item: what one request asks for
R = TypeVar("R")  # its result

RunBatch = Callable[[Sequence[T]], Sequence["R | BaseException"]]


@dataclass
class BatchStats:
    """Totals over every batcher that shares this object."""

    batches: int = 0  # calls of `run` (trips to the thread pool)
    items: int = 0  # items in them
    rows: int = 0  # rows (images) in them
    largest: int = 0  # most items in one batch

    @property
    def mean_items(self) -> float:
        return self.items / self.batches if self.batches else 0.0


@dataclass
class _Waiting(Generic[T, R]):
    item: T
    rows: int
    future: asyncio.Future[R]


class Batcher(Generic[T, R]):
    """Coalesces the items submitted on one event loop into calls of `run` in a thread.

    `run(items)` must return one outcome per item, in order: the item's result, or the
    exception to raise in its waiter. An exception raised by `run` itself fails the batch's
    items (all of them) with it.
    """

    def __init__(
        self,
        run: RunBatch[T, R],
        *,
        rows: Callable[[T], int],
        max_rows: int,
        max_wait_s: float = 0.0,
        max_batches: int = 1,
        executor: Executor | None = None,
        stats: BatchStats | None = None,
        on_idle: Callable[[Batcher[T, R]], None] | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        if max_batches < 1:
            raise ValueError(f"max_batches must be at least 1, got {max_batches}")
        self._run = run
        self._rows = rows
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.max_batches = max_batches
        self._executor = executor  # None: the event loop's default executor
        self.stats = stats if stats is not None else BatchStats()
        self._on_idle = on_idle
        self._queue: deque[_Waiting[T, R]] = deque()
        self._queued_rows = 0
        self._running: set[asyncio.Task[None]] = set()
        self._expected = 1  # items in flight when the last batch ended: the next batch's goal
        self._wake: asyncio.Event | None = None  # the drainer's: a batch ended, or queue full
        self._drainer: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch running."""
        return self._drainer is None and not self._queue and not self._running

    async def submit(self, item: T) -> R:
        """The item's result, computed in a batch with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        rows = self._rows(item)
        self._queue.append(_Waiting(item, rows, future))
        self._queued_rows += rows
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        elif self._wake is not None and self._enough_queued():
            self._wake.set()
        return await future

    def _enough_queued(self) -> bool:
        """A full batch, or as many items as the last batch's concurrency showed."""
        return self._queued_rows >= self.max_rows or len(self._queue) >= self._expected

    def _may_start(self) -> bool:
        """A first batch whenever something waits; more only as full batches, up to the max."""
        if not self._queue:
            return False
        if not self._running:
            return True
        return len(self._running) < self.max_batches and self._queued_rows >= self.max_rows

    async def _drain(self) -> None:
        """Starts batches while anything is queued or running; started by a burst's first item."""
        self._wake = wake = asyncio.Event()
        try:
            while self._queue or self._running:
                if not self._may_start():
                    wake.clear()
                    await wake.wait()
                    continue
                if not self._running and self.max_wait_s > 0:
                    await self._linger(wake)
                batch = self._take()
                if batch:
                    task = asyncio.get_running_loop().create_task(self._run_batch(batch))
                    self._running.add(task)
                    task.add_done_callback(self._batch_done)
        finally:
            self._drainer = self._wake = None
            for waiting in self._queue:  # only when cancelled (the loop shuts down)
                waiting.future.cancel()
            self._running = {task for task in self._running if not task.done()}
            if self.idle and self._on_idle is not None:
                self._on_idle(self)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._wake is not None:
            self._wake.set()

    async def _linger(self, wake: asyncio.Event) -> None:
        """Wait up to max_wait_s for the items the last batch said to expect (or max_rows)."""
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while not self._enough_queued():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Waiting[T, R]]:
        """The next batch: queued items in order, up to max_rows (at least one item)."""
        batch: list[_Waiting[T, R]] = []
        rows = 0
        while self._queue:
            waiting = self._queue[0]
            if waiting.future.done():  # its request was cancelled while it waited
                self._queue.popleft()
                self._queued_rows -= waiting.rows
                continue
            if batch and rows + waiting.rows > self.max_rows:
                break
            self._queue.popleft()
            self._queued_rows -= waiting.rows
            batch.append(waiting)
            rows += waiting.rows
        return batch

    async def _run_batch(self, batch: list[_Waiting[T, R]]) -> None:
        items = [waiting.item for waiting in batch]
        stats = self.stats
        stats.batches += 1
        stats.items += len(batch)
        stats.rows += sum(waiting.rows for waiting in batch)
        stats.largest = max(stats.largest, len(batch))
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self._executor, self._run, items)
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items gave {len(outcomes)} outcomes")
        except asyncio.CancelledError:  # the loop shuts down
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as exc:
            log.exception("a batch of %d items failed", len(batch))
            outcomes = [exc] * len(batch)
        # Its requests come back soon (closed-loop clients): the next batch waits for as many.
        self._expected = len(batch) + len(self._queue)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.future.done():  # cancelled while its batch ran: the result is dropped
                continue
            if isinstance(outcome, BaseException):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)


class Batchers:
    """Batchers by key (e.g. a model name), made on first use and dropped once idle.

    Keys come from requests (any model name a client sends), so an idle batcher is not kept.
    All batchers share `stats`.
    """

    def __init__(self) -> None:
        self.stats = BatchStats()
        self._live: dict[Hashable, Batcher[Any, Any]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def get(self, key: Hashable, make: Callable[[BatchStats], Batcher[T, R]]) -> Batcher[T, R]:
        """The live batcher of `key`, or a new one from `make(stats)`; event loop only."""
        batcher = self._live.get(key)
        if batcher is None:
            batcher = make(self.stats)
            batcher._on_idle = self._forget(key)
            self._live[key] = batcher
        return cast(Batcher[T, R], batcher)

    def _forget(self, key: Hashable) -> Callable[[Batcher[Any, Any]], None]:
        def forget(batcher: Batcher[Any, Any]) -> None:
            if self._live.get(key) is batcher and batcher.idle:
                del self._live[key]

        return forget
