"""Enqueue training by task name: the API never imports the worker (DESIGN §2)."""

from __future__ import annotations

from celery import Celery

TRAIN_TASK = "ganserve.train"


class TrainingQueue:
    """A Celery client that can only send; the task itself lives in ganserve.worker."""

    def __init__(self, broker_url: str, queue: str) -> None:
        self.queue = queue
        self.celery = Celery("ganserve-api", broker=broker_url, set_as_current=False)
        self.celery.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
            broker_transport_options={"socket_timeout": 5, "socket_connect_timeout": 5},
        )

    def enqueue(self, job_id: str) -> None:
        self.celery.send_task(TRAIN_TASK, args=[job_id], queue=self.queue)

    def close(self) -> None:
        self.celery.close()
