"""The one settings class of every ganserve process, read from the environment.

Operators rely on these names: GANSERVE_DATA_DIR, DATABASE_URL, REDIS_URL, GANSERVE_API_KEYS.
Every other setting is GANSERVE_<FIELD NAME>. `.env.example` lists them all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANSERVE_", extra="ignore")

    # Where the SQLite file, artifacts (checkpoints, exported generators) and datasets live.
    data_dir: Path = Path("ganserve-data")
    # SQLAlchemy URL of the metadata database; unset = SQLite file in data_dir.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "GANSERVE_DATABASE_URL")
    )
    # Redis broker and event bus; unset = `ganserve up` starts a private server.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "GANSERVE_REDIS_URL")
    )
    # Bearer tokens accepted on mutating routes; comma-separated; empty = no authentication.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Also require a key to sample when keys are configured.
    protect_sampling: bool = False

    # HTTP bind address of `ganserve api` / `ganserve up`.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Generators kept loaded in each API process (least recently used evicted).
    generator_cache_size: int = Field(default=8, ge=1, le=256)
    # Sampling bounds: images per request, integer upscale factor, pixels per response.
    max_samples_per_request: int = Field(default=256, ge=1, le=10_000)
    max_bulk_samples: int = Field(default=10_000, ge=1, le=1_000_000)
    max_scale: int = Field(default=16, ge=1, le=64)
    max_output_pixels: int = Field(default=16_777_216, ge=64)  # 4096 x 4096
    # Estimated CPU-seconds one sampling request may spend drawing its noise (sampling
    # contract 1's truncation redraws included; service/sampling/limits.py estimates it);
    # over it: 413.
    max_sample_work_s: float = Field(default=5.0, gt=0)
    # Coalesced samples.png: weight (images x scale^2) of one batch at most; the longest an idle
    # model waits for the requests its last batch says to expect (0 = never); batches of one
    # model at once (beyond the first, only full ones).
    sample_batch_rows: int = Field(default=64, ge=1, le=4096)
    sample_batch_wait_ms: float = Field(default=2.0, ge=0.0, le=100.0)
    sample_batches: int = Field(default=2, ge=1, le=64)
    # Torch intra-op threads per API process (1 is fastest for small generators).
    torch_threads: int = Field(default=1, ge=1, le=256)
    # uvicorn's access log: one log line per HTTP request (count). Off by default: on the
    # sampling hot path the line costs more than routing does (bench/README.md); /metrics
    # counts requests by route and status either way.
    access_log: bool = False

    # Celery queue the API sends training tasks to and workers consume (route GPU pools here).
    training_queue: str = "ganserve"
    # Seconds a training task may run before Celery kills it.
    job_time_limit_s: int = Field(default=7 * 24 * 3600, ge=60)
    # Seconds a worker's claim on a job lasts without a heartbeat (renewed every third of it).
    job_lease_s: float = Field(default=60.0, ge=1.0)
    # Attempts a job gets (worker deaths, lost leases) before it fails with the reason.
    max_job_attempts: int = Field(default=3, ge=1, le=100)
    # Seconds between reaper passes (re-enqueue jobs with stale leases or lost messages).
    reaper_interval_s: float = Field(default=15.0, gt=0)
    # A queued job whose message is in no queue this long after it was sent is sent again.
    requeue_after_s: float = Field(default=60.0, gt=0)
    # Seconds between progress writes to the database (events are published as often).
    progress_interval_s: float = Field(default=1.0, gt=0)
    # Port of the worker's own Prometheus endpoint (0 = off) and the address it binds.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # Torch device used by the worker when a spec says "auto".
    worker_device: str = "auto"
    # Torch intra-op (CPU) threads of each worker process, a count. 1 by measurement
    # (bench/train_speed.py): the reference models train about twice as fast on 1 thread as
    # on 2 on a 2-core host, and 2-thread OpenMP collapses when other processes share the
    # cores. Raise it on large CPU-only hosts that run one worker.
    worker_torch_threads: int = Field(default=1, ge=1, le=256)

    # Bytes of a request body on every route but dataset uploads (those have their own limit);
    # checked from Content-Length, and counted while a body streams in. Over it: 413.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Seconds an Idempotency-Key of POST /v1/jobs or POST /v1/datasets is remembered: a
    # retry with the same key (and body) within it gets the first answer, not a new job.
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0)

    # Dataset uploads: body size, zip entries, total uncompressed size, per-entry compression
    # ratio, pixels per decoded image, and the side images are resized to by default.
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_upload_entries: int = Field(default=100_000, ge=1)
    max_upload_uncompressed_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    max_upload_compression_ratio: float = Field(default=100.0, ge=1.0)
    max_upload_image_pixels: int = Field(default=4096 * 4096, ge=64)
    # CycleGAN translate with keep_size: pixels of the picture translated at its own size (the
    # generators' activations grow with them; about 0.2 KB per pixel at 32 px-model widths).
    max_translate_pixels: int = Field(default=1024 * 1024, ge=64)

    # Optional local TorchScript Inception feature extractor for Inception FID (never
    # downloaded); unset = only the offline classifier-based metrics.
    inception_weights: Path | None = None

    log_level: str = "INFO"
    # "json" (one JSON object per line, for log shippers) or "text".
    log_format: Literal["json", "text"] = "json"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ganserve.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def visibility_timeout_s(self) -> int:
        # Above the job time limit, so Redis never redelivers a task that is still running.
        return self.job_time_limit_s + 3600


@lru_cache
def get_settings() -> Settings:
    return Settings()
