"""The Celery task: decode the message, then hand over to `training.run_training_job`.

A task is like a web view: no training logic here, so that logic is tested without Celery.

The task always returns normally, so its message is acknowledged (acks_late) whatever the
outcome: the database, not the broker, says what happens to the job next. When the worker is
shutting down, the job is released and its task sent again to the queue it came from, so
another worker resumes it from its checkpoint; a job whose resend fails stays queued and the
API's reaper sends it again.

One exception: a database outage before the job could even be claimed. Then nothing was
decided, so the message is not acknowledged: after OUTAGE_RETRY_S the task rejects it with
requeue, and it is delivered again (to this or another worker) until the database is back.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TypeGuard

from celery import Celery, Task
from celery.exceptions import Reject

from ganserve.store.db import outage_of
from ganserve.store.errors import InvalidValueError
from ganserve.store.names import validate_job_id
from ganserve.worker import shutdown
from ganserve.worker.resources import LazyResources
from ganserve.worker.training import Outcome, run_training_job

log = logging.getLogger(__name__)

# The name the API sends (ganserve.service.jobs.queue.TRAIN_TASK); the two never import each other.
TRAIN_TASK = "ganserve.train"
# Seconds to wait before handing a message back to the broker during a database outage
# (so that a worker does not spin on it while the database is down).
OUTAGE_RETRY_S = 5.0


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
        queue = _delivery_queue(task) or resources.settings.training_queue
        if shutdown.requested():
            # Delivered as the worker began to stop: leave the job untouched for another one.
            log.info("job %s: worker shutting down; not starting it", job_id)
            _send_again(app, job_id, queue)
            return "released"
        try:
            outcome = run_training_job(
                job_id,
                resources.get(),
                worker_name(task.request.hostname),
                stop_requested=shutdown.requested,
            )
        except Exception as error:
            if outage_of(error) is None:
                raise
            log.warning(
                "job %s: the database is unreachable (%s); the message goes back to the "
                "queue in %g s", job_id, error, OUTAGE_RETRY_S, extra={"job_id": job_id},
            )  # fmt: skip
            time.sleep(OUTAGE_RETRY_S)
            raise Reject("database unreachable", requeue=True) from error
        if outcome == "released":
            _send_again(app, job_id, queue)
        return outcome


def _send_again(app: Celery, job_id: str, queue: str) -> None:
    """Send the job's task again so that another worker continues it."""
    try:
        app.send_task(TRAIN_TASK, args=[job_id], queue=queue)
    except Exception as exc:  # any broker failure: the job is queued, the reaper resends it
        log.warning(
            "job %s: could not send it again (%s); it stays queued and the reaper resends it",
            job_id,
            exc,
            extra={"job_id": job_id},
        )
        return
    log.info("job %s: sent again to queue %s", job_id, queue, extra={"job_id": job_id})


def _delivery_queue(task: Task) -> str | None:
    """The queue (routing key) the current message came from, if known."""
    info = task.request.delivery_info or {}
    routing_key = info.get("routing_key")
    return routing_key if isinstance(routing_key, str) and routing_key else None


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
