"""The Celery app of `ganserve worker` / `celery -A ganserve.worker.app worker`.

Importing this module connects nowhere and leaves CUDA alone: the database engine and the
Redis publisher are built in the process that runs the first task (see resources.py).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from ganserve.logs import configure_logging
from ganserve.settings import Settings, get_settings
from ganserve.worker import shutdown
from ganserve.worker.errors import BrokerNotConfiguredError
from ganserve.worker.resources import LazyResources, missing_broker_message
from ganserve.worker.tasks import register_tasks
from ganserve.worker.telemetry import start_metrics_server


def create_celery_app(settings: Settings) -> Celery:
    """A worker app consuming `settings.training_queue` on the Redis at `settings.redis_url`."""
    if not settings.redis_url:
        raise BrokerNotConfiguredError(missing_broker_message())
    return _build(settings, settings.redis_url)


def _build(settings: Settings, broker_url: str | None) -> Celery:
    app = Celery("ganserve-worker", broker=broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A job is acknowledged when it ends, so a worker killed mid-job leaves it queued.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,  # one training process per GPU
        task_default_queue=settings.training_queue,
        # Above the time limit: Redis must not hand a running job to a second worker.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_time_limit=settings.job_time_limit_s,
        broker_connection_retry_on_startup=True,
    )
    resources = LazyResources(settings)
    register_tasks(app, resources)
    _manage(resources)
    _observe(settings)
    return app


def _observe(settings: Settings) -> None:
    """JSON logs (instead of Celery's own setup), the worker's Prometheus endpoint and its
    torch threads (`worker_torch_threads`)."""

    def setup_logging(**_: Any) -> None:
        configure_logging(settings.log_level, settings.log_format)

    def serve_metrics(**_: Any) -> None:
        start_metrics_server(settings)

    def set_threads(**_: Any) -> None:
        # Before the first job builds anything: the count chosen by measurement (settings).
        import torch

        torch.set_num_threads(settings.worker_torch_threads)

    signals.setup_logging.connect(setup_logging, weak=False)
    signals.worker_init.connect(serve_metrics, weak=False)
    signals.worker_init.connect(set_threads, weak=False)
    signals.worker_process_init.connect(set_threads, weak=False)


def _manage(resources: LazyResources) -> None:
    """Reset resources in forked pool processes; close them when the process shuts down."""

    def forget(**_: Any) -> None:
        resources.forget()

    def close(**_: Any) -> None:
        resources.close()

    signals.worker_init.connect(_warm_up, weak=False)
    signals.worker_process_init.connect(forget, weak=False)
    signals.worker_process_shutdown.connect(close, weak=False)
    signals.worker_shutdown.connect(close, weak=False)
    # SIGTERM: the running job checkpoints and is handed to another worker (shutdown.py).
    shutdown.install()


def _warm_up(**_: Any) -> None:
    """Import now what torch imports lazily when a job builds its first optimizer.

    `torch._dynamo` takes seconds of CPU to import; inside the first job it would delay the
    first heartbeat by as much, and a short lease could expire before it.
    """
    try:
        import torch._dynamo  # noqa: F401
    except ImportError:  # pragma: no cover - a torch build without it
        pass


def _app_from_environment() -> Celery:
    settings = get_settings()
    if settings.redis_url:
        return create_celery_app(settings)
    # Without a broker, importing still works (tools inspect this module); starting fails.
    unconfigured = _build(settings, None)

    def refuse_to_start(instance: Any = None, **_: Any) -> None:
        if getattr(instance, "app", None) is unconfigured:
            raise SystemExit(f"ganserve worker: {missing_broker_message()}")

    signals.celeryd_init.connect(refuse_to_start, weak=False)
    return unconfigured


app = _app_from_environment()
