"""Response models of the jobs, datasets and operations routes (the OpenAPI document's shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ganserve.service.jobs.spec import TrainSpec

# The job statuses of store.tables.JOB_STATUSES, spelled out for the OpenAPI enum.
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobProgress(BaseModel):
    step: int = Field(description="Generator updates done.")
    total_steps: int = Field(description="Generator updates planned (the spec's steps).")
    fraction: float = Field(description="step / total_steps, in [0, 1].")
    steps_per_sec: float | None = Field(description="Recent training speed; null until known.")
    eta_s: float | None = Field(description="Estimated seconds left; null until known.")


class ModelRef(BaseModel):
    name: str
    version: int


class JobOut(BaseModel):
    """A training job: its status, progress, outcome and the spec it runs."""

    id: str = Field(description="32 hex digits.")
    name: str = Field(description="The model this job trains and registers a version of.")
    status: JobStatus
    phase: Literal["preparing", "training"] | None = Field(
        description=(
            "While running: `preparing` until the first training step (loading the dataset "
            "and, once per dataset, training the evaluation classifier, reported by "
            "`preparing` events), then `training`; null when not running."
        )
    )
    cancel_requested: bool = Field(
        description="A cancel was asked for; a running job stops at its next step."
    )
    progress: JobProgress
    last_losses: dict[str, float | None] = Field(
        description="The latest losses by name (e.g. loss_d, loss_g)."
    )
    latest_metrics: dict[str, Any] = Field(
        description="The newest value of each quality metric (FD, KID, class coverage, ...)."
    )
    warnings: list[str]
    error: str | None = Field(description="Why the job failed; null otherwise.")
    attempt: int = Field(description="Times a worker has started the job (1 on a first run).")
    max_attempts: int
    worker: str | None = Field(description="The worker running (or that last ran) the job.")
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    spec: TrainSpec = Field(description="The training spec with every default filled in.")
    model: ModelRef | None = Field(description="The model version the job registered.")


class JobPage(BaseModel):
    items: list[JobOut] = Field(description="Jobs, newest first.")
    total: int = Field(description="Jobs matching the filter, on all pages.")
    limit: int
    offset: int


class JobHistory(BaseModel):
    job_id: str
    step: int = Field(description="The job's last reported step.")
    total_steps: int
    series: dict[str, list[tuple[int, float]]] = Field(
        description="Each loss or metric series as [step, value] pairs, sorted by step."
    )


class DatasetOut(BaseModel):
    name: str
    builtin: bool
    available: bool = Field(description="Its files are present: a job can train on it.")
    image_size: int = Field(description="Height = width, in pixels.")
    channels: int = Field(description="1 = grayscale, 3 = RGB.")
    classes: list[str] = Field(description="Class names, in label order.")
    num_classes: int
    size: int = Field(description="Training images (the standard count when unavailable).")
    hint: str | None = Field(description="When unavailable: which files to put where.")


class DatasetList(BaseModel):
    items: list[DatasetOut]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description="'ok' per dependency: database, broker.")
