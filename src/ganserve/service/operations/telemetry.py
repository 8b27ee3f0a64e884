"""Prometheus metrics of the API process (DESIGN §4 /metrics, issue 4).

Process-wide counters live in prometheus-client's default registry: HTTP requests and
latency by route template and status, images generated. What only the database and the
broker know — jobs by status, queue length, each running job's steps/s and latest metric
values — and the generator cache's counters are read at scrape time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ganserve.service.context import AppContext
from ganserve.store import Store, stats
from ganserve.store.db import outage_of
from ganserve.store.stats import RunningJob

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "ganserve_http_requests_total", "HTTP requests served.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "ganserve_http_request_duration_seconds",
    "Time from request to the end of the response body.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IMAGES_GENERATED = Counter(
    "ganserve_images_generated_total", "Images produced by generator forward passes."
)


_CHILDREN_KEPT = 256  # (method, route, status) label sets whose metric children are kept


class MetricsMiddleware:
    """Pure ASGI (no per-request thread hop); labels by route template, not raw path.

    The labelled children of a (method, route, status) are looked up once and kept: a
    `labels()` call costs about 1.5 us each (lock, tuple, dict), twice per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            key = (scope.get("method", ""), route, str(status))
            children = self._children.get(key)
            if children is None:
                children = (HTTP_REQUESTS.labels(*key), HTTP_LATENCY.labels(*key[:2]))
                if len(self._children) < _CHILDREN_KEPT:  # methods come from clients
                    self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)


@dataclass
class _Snapshot:
    jobs_by_status: dict[str, int]
    running: list[RunningJob]
    database_up: bool = True


def _read_database(store: Store) -> _Snapshot:
    """The job counts; during a database outage none (and database_up 0): a scrape still works."""
    try:
        with store.session() as session:
            return _Snapshot(stats.jobs_by_status(session), stats.running_jobs(session))
    except Exception as error:
        if outage_of(error) is None:
            raise
        log.warning("metrics scrape without job counts: %s", error)
        return _Snapshot({}, [], database_up=False)


class _ScrapeCollector(Collector):
    def __init__(self, context: AppContext, snapshot: _Snapshot, queue_length: int) -> None:
        self.context, self.snapshot, self.queue_length = context, snapshot, queue_length

    def collect(self) -> list[Metric]:
        database = GaugeMetricFamily(
            "ganserve_database_up", "1 when the last scrape read the database, else 0."
        )
        database.add_metric([], 1 if self.snapshot.database_up else 0)
        jobs = GaugeMetricFamily("ganserve_jobs", "Jobs by status.", labels=["status"])
        for status, count in sorted(self.snapshot.jobs_by_status.items()):
            jobs.add_metric([status], count)
        queue = GaugeMetricFamily(
            "ganserve_queue_length", "Training messages waiting in the broker.", labels=["queue"]
        )
        queue.add_metric([self.context.settings.training_queue], self.queue_length)
        rate = GaugeMetricFamily(
            "ganserve_job_steps_per_second", "Steps/s of each running job.",
            labels=["job_id", "model"],
        )  # fmt: skip
        metric = GaugeMetricFamily(
            "ganserve_job_metric", "Latest evaluation values of each running job.",
            labels=["job_id", "model", "metric"],
        )  # fmt: skip
        for job in self.snapshot.running:
            if job.steps_per_sec is not None:
                rate.add_metric([job.id, job.name], job.steps_per_sec)
            for key, value in sorted(job.metrics.items()):
                metric.add_metric([job.id, job.name, key], value)
        cache = self.context.generators
        hits = CounterMetricFamily(
            "ganserve_generator_cache_hits", "Sampling requests served by a loaded generator."
        )
        hits.add_metric([], cache.hits)
        loads = CounterMetricFamily(
            "ganserve_generator_cache_loads", "Generators loaded from their files."
        )
        loads.add_metric([], cache.loads)
        evictions = CounterMetricFamily(
            "ganserve_generator_cache_evictions", "Generators dropped from a full cache."
        )
        evictions.add_metric([], cache.evictions)
        coalescing = self.context.batchers.stats
        batches = CounterMetricFamily(
            "ganserve_sample_batches",
            "Coalesced samples.png batches: trips to the thread pool, each one forward.",
        )
        batches.add_metric([], coalescing.batches)
        batched = CounterMetricFamily(
            "ganserve_sample_batched_requests", "samples.png requests served in those batches."
        )
        batched.add_metric([], coalescing.items)
        return [database, jobs, queue, rate, metric, hits, loads, evictions, batches, batched]


async def render_metrics(context: AppContext) -> bytes:
    """The Prometheus text exposition of this process (default registry + scrape-time data)."""
    snapshot = await anyio.to_thread.run_sync(_read_database, context.store)
    try:
        queue_length = int(await context.redis.llen(context.settings.training_queue))
    except Exception:  # a scrape must not fail because the broker is down; -1 says unknown
        queue_length = -1
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_ScrapeCollector(context, snapshot, queue_length))
    return generate_latest(REGISTRY) + generate_latest(scrape)
