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
from concurrent.futures import Executor, ThreadPoolExecutor
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
        self._executor = executor  # None: one pool shared by the process's batchers
        self.stats = stats if stats is not None else BatchStats()
        self._on_idle = on_idle
        self._queue: deque[_Waiting[T, R]] = deque()
        self._queued_rows = 0
        self._running = 0  # batches in the pool
        self._expected = 1  # items in flight when the last batch ended: the next batch's goal
        # A dispatch waiting on the event loop: the next turn's (call_soon), or a linger's end
        # (call_at). Plain callbacks, no tasks: a lone request pays for one hop and no more.
        self._pending: asyncio.Handle | None = None
        self._linger_until: float | None = None  # set while a linger's call_at is pending

    @property
    def idle(self) -> bool:
        """Nothing queued, no batch running and no dispatch pending."""
        return self._pending is None and not self._queue and not self._running

    async def submit(self, item: T) -> R:
        """The item's result, computed in a batch with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        rows = self._rows(item)
        self._queue.append(_Waiting(item, rows, future))
        self._queued_rows += rows
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """A dispatch on the next turn, if a batch may start (a lingering one: if now enough)."""
        if self._pending is not None:
            if self._linger_until is None or not self._enough_queued():
                return  # the next turn's dispatch takes it, or the linger goes on
            self._pending.cancel()  # enough have come: end the linger
            self._linger_until = None
        elif not self._may_start():
            return
        self._pending = loop.call_soon(self._dispatch)

    def _enough_queued(self) -> bool:
        """A full batch, or as many items as the last batch's concurrency showed."""
        return self._queued_rows >= self.max_rows or len(self._queue) >= self._expected

    def _may_start(self) -> bool:
        """A first batch whenever something waits; more only as full batches, up to the max."""
        if not self._queue:
            return False
        if not self._running:
            return True
        return self._running < self.max_batches and self._queued_rows >= self.max_rows

    def _dispatch(self) -> None:
        """Start every batch that may start now (event loop callback)."""
        self._pending = None
        loop = asyncio.get_running_loop()
        while self._may_start():
            if not self._running and self.max_wait_s > 0 and not self._enough_queued():
                if self._linger_until is None:
                    self._linger_until = loop.time() + self.max_wait_s
                if loop.time() < self._linger_until:  # wait for the items the last batch says
                    self._pending = loop.call_at(self._linger_until, self._dispatch)
                    return
            self._linger_until = None
            batch = self._take()
            if batch:
                self._start(loop, batch)
        self._linger_until = None
        if self.idle and self._on_idle is not None:
            self._on_idle(self)

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

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting[T, R]]) -> None:
        stats = self.stats
        stats.batches += 1
        stats.items += len(batch)
        stats.rows += sum(waiting.rows for waiting in batch)
        stats.largest = max(stats.largest, len(batch))
        self._running += 1
        items = [w.item for w in batch]

        # The pool calls back onto the loop itself: asyncio's run_in_executor would wrap the
        # pool's future in an asyncio one (two more callbacks and a copy of its state), 20-25
        # us of CPU per batch on this project's machine (bench/README.md).
        def work() -> None:
            try:
                outcome: Sequence[R | BaseException] | BaseException = self._run(items)
            except BaseException as exc:
                outcome = exc
            loop.call_soon_threadsafe(self._finish, batch, outcome)

        (self._executor or _default_executor()).submit(work)

    def _finish(
        self, batch: list[_Waiting[T, R]], outcome: Sequence[R | BaseException] | BaseException
    ) -> None:
        """Hand each item its outcome, then start what waits (event loop callback)."""
        self._running -= 1
        outcomes: Sequence[R | BaseException]
        error = outcome if isinstance(outcome, BaseException) else None
        if not isinstance(outcome, BaseException):
            outcomes = outcome
            if len(outcomes) != len(batch):
                error = RuntimeError(f"a batch of {len(batch)} items gave {len(outcomes)} outcomes")
        if error is not None:
            log.error("a batch of %d items failed", len(batch), exc_info=error)
            outcomes = [error] * len(batch)
        # Its requests come back soon (closed-loop clients): the next batch waits for as many.
        self._expected = len(batch) + len(self._queue)
        for waiting, result in zip(batch, outcomes, strict=True):
            if waiting.future.done():  # cancelled while its batch ran: the result is dropped
                continue
            if isinstance(result, BaseException):
                waiting.future.set_exception(result)
            else:
                waiting.future.set_result(result)
        self._schedule(asyncio.get_running_loop())
        if self.idle and self._on_idle is not None:
            self._on_idle(self)


_executor: ThreadPoolExecutor | None = None  # made on first use, never at import


def _default_executor() -> ThreadPoolExecutor:
    """The pool of batchers given none (the event loop's thread only: no lock needed)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(thread_name_prefix="batcher")
    return _executor


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
