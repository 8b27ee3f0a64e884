"""The Celery app's configuration, its task registration, and what importing it does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from celery import signals
from celery.exceptions import Reject

from ganserve.service.jobs.queue import TRAIN_TASK as API_TASK_NAME
from ganserve.settings import Settings
from ganserve.worker import tasks
from ganserve.worker.app import create_celery_app
from ganserve.worker.errors import BrokerNotConfiguredError
from ganserve.worker.tasks import TRAIN_TASK
from ganserve.worker.training import Outcome
from tests.helpers.processes import free_port

BROKER = "redis://127.0.0.1:6399/3"  # never connected to: building an app connects nowhere


@pytest.fixture
def settings() -> Settings:
    return Settings(redis_url=BROKER, training_queue="gpu-a100", job_time_limit_s=7200)


def test_the_train_task_is_registered_under_the_name_the_api_sends(settings: Settings) -> None:
    app = create_celery_app(settings)
    assert TRAIN_TASK == API_TASK_NAME == "ganserve.train"
    task = app.tasks["ganserve.train"]
    assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
    # Each app's task runs with that app's own settings and resources, not the first app's.
    assert create_celery_app(settings).tasks["ganserve.train"] is not task


def test_the_app_is_configured_for_long_gpu_jobs(settings: Settings) -> None:
    conf = create_celery_app(settings).conf
    assert conf.broker_url == BROKER
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.task_ignore_result
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_concurrency == 1
    assert conf.task_default_queue == "gpu-a100"
    assert conf.task_time_limit == 7200
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.broker_connection_retry_on_startup


def test_an_app_without_a_broker_says_how_to_get_one() -> None:
    with pytest.raises(BrokerNotConfiguredError, match="REDIS_URL.*ganserve up"):
        create_celery_app(Settings(redis_url=None))


def test_a_message_with_an_invalid_job_id_is_dropped(settings: Settings) -> None:
    task = create_celery_app(settings).tasks["ganserve.train"]
    outcome: Outcome = task("../../etc/passwd")
    assert outcome == "skipped"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and "GANSERVE" not in k}
    return {**env, **extra}


def test_importing_the_worker_connects_nowhere_and_leaves_cuda_alone() -> None:
    # A broker URL nothing listens on: an import that connected would fail or hang.
    script = textwrap.dedent(
        """
        import sys
        import ganserve.worker.app as worker_app
        assert "ganserve.train" in worker_app.app.tasks
        assert not sys.modules["torch"].cuda.is_initialized()
        forbidden = [m for m in sys.modules if m.startswith(("ganserve.service", "fastapi"))]
        assert not forbidden, forbidden
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=_clean_env(REDIS_URL=BROKER),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_worker_started_without_redis_url_exits_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "ganserve.worker.app", "worker", "--pool", "solo"],
        env=_clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "REDIS_URL is not set" in result.stderr and "ganserve up" in result.stderr


def test_a_job_whose_claim_meets_a_database_outage_is_requeued_not_acked(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tasks, "OUTAGE_RETRY_S", 0.01)
    down = settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "database_url": f"postgresql+psycopg://ganserve@127.0.0.1:{free_port()}/ganserve",
        }
    )
    task = create_celery_app(down).tasks["ganserve.train"]
    with pytest.raises(Reject) as rejected:
        task("0" * 32)
    assert rejected.value.requeue is True  # back in the queue for when the database returns


def test_a_worker_process_runs_torch_at_the_configured_thread_count() -> None:
    # The default (1); a receiver stays connected after the test, so it must set nothing odd.
    before = torch.get_num_threads()
    create_celery_app(Settings(redis_url=BROKER))
    try:
        torch.set_num_threads(2)
        signals.worker_process_init.send(sender=None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
