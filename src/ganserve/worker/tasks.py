"""The Celery task: decode the message, then hand over to `training.run_training_job`.

A task is like a web view: no training logic here, so that logic is tested without Celery.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TypeGuard

from celery import Celery, Task

from ganserve.store.errors import InvalidValueError
from ganserve.store.names import validate_job_id
from ganserve.worker.resources import LazyResources
from ganserve.worker.training import Outcome, run_training_job

log = logging.getLogger(__name__)

# The name the API sends (ganserve.service.queue.TRAIN_TASK); the two never import each other.
TRAIN_TASK = "ganserve.train"


def register_tasks(app: Celery, resources: LazyResources) -> None:
    """Register the `ganserve.train` task on `app`, running jobs with `resources`."""

    @app.task(
        name=TRAIN_TASK,
        bind=True,
        # Not shared: each app's task must run with that app's own resources.
        shared=False,
        ignore_result=True,
        acks_late=True,
        reject_on_worker_lost=True,
    )
    def train_job(task: Task, job_id: object) -> Outcome:
        """Run training job `job_id` (a 32-hex-digit id) to a final status."""
        if not _is_job_id(job_id):
            log.error("ignoring a %s message with an invalid job id %r", TRAIN_TASK, job_id)
            return "skipped"
        return run_training_job(job_id, resources.get(), worker_name(task.request.hostname))


def _is_job_id(value: object) -> TypeGuard[str]:
    if not isinstance(value, str):
        return False
    try:
        validate_job_id(value)
    except InvalidValueError:
        return False
    return True


def worker_name(hostname: str | None) -> str:
    """`<celery hostname>:<pid>`: names the process holding a job's lease."""
    return f"{hostname or socket.gethostname()}:{os.getpid()}"
