"""The worker's own Prometheus metrics, served on GANSERVE_WORKER_METRICS_PORT when set.

A scrape of the API sees jobs by status and each running job's last written progress (from
the database); a scrape of a worker sees the training it does itself, as it happens.
"""

from __future__ import annotations

import contextlib
import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from ganserve.settings import Settings

log = logging.getLogger(__name__)

STEPS = Counter("ganserve_worker_steps_total", "Generator updates trained by this worker.")
JOBS = Counter(
    "ganserve_worker_jobs_total", "Job runs by outcome (succeeded, failed, cancelled, "
    "released, skipped, lost).", ["outcome"],
)  # fmt: skip
EVALUATION_SECONDS = Histogram(
    "ganserve_worker_evaluation_seconds", "Time of one quality evaluation.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)  # fmt: skip
JOB_STEPS_PER_SECOND = Gauge(
    "ganserve_worker_job_steps_per_second", "Steps/s of the job this worker runs.", ["job_id"]
)
JOB_METRIC = Gauge(
    "ganserve_worker_job_metric", "Latest quality metrics of the job this worker runs.",
    ["job_id", "metric"],
)  # fmt: skip


def start_metrics_server(settings: Settings) -> None:
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
        log.info("worker metrics on http://%s:%d/metrics", settings.worker_metrics_host,
                 settings.worker_metrics_port)  # fmt: skip


def forget_job(job_id: str, metric_names: list[str]) -> None:
    """Drop a finished job's per-job series so a scrape shows only the running one."""
    with contextlib.suppress(KeyError):
        JOB_STEPS_PER_SECOND.remove(job_id)
    for name in metric_names:
        with contextlib.suppress(KeyError):
            JOB_METRIC.remove(job_id, name)
