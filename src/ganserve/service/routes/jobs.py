"""Routes: training jobs (DESIGN §4 Jobs). Logic lives in service.jobs and service.events."""

from __future__ import annotations

import io
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Header, Path, Query, Response
from PIL import Image
from pydantic import Field
from sse_starlette import EventSourceResponse

from ganserve.gan.sample import encode_png, upscale
from ganserve.service.deps import (
    ArtifactsDep,
    ContextDep,
    MutatingAuth,
    QueueDep,
    RedisDep,
    SessionDep,
    SettingsDep,
)
from ganserve.service.errors import PayloadTooLargeError
from ganserve.service.jobs import actions as jobs
from ganserve.service.jobs.events import (
    PING_S,
    STREAM_ID_PATTERN,
    job_event_stream,
    parse_last_event_id,
)
from ganserve.service.jobs.plots import render_history_png
from ganserve.service.jobs.spec import TrainSpec
from ganserve.service.schemas import JobHistory, JobOut, JobPage, JobStatus
from ganserve.settings import Settings
from ganserve.store.idempotency import KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN
from ganserve.store.names import JOB_ID_PATTERN, SERIES_PATTERN

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No job with this id (problem details)."}
}
# history.png is drawn at 100 dpi times `scale`: at 4 the tallest chart (9 panels, a
# conditional model's) is 3,600 x 8,880 px (32 Mpx, about 0.13 GB of RGBA while drawn).
MAX_HISTORY_SCALE = 4
PreviewScale = Annotated[
    int, Query(ge=1, description="Integer upscaling of the grid (nearest neighbour).")
]
HistoryScale = Annotated[
    int,
    Query(ge=1, le=MAX_HISTORY_SCALE, description="Resolution multiplier (100 dpi x scale)."),
]

# Identifier patterns are documented, not enforced by FastAPI: the service's own checks
# (store/names.py, jobs/events.py) answer with messages that say what is wrong.
JobId = Annotated[
    str, Path(description="32 hex digits.", json_schema_extra={"pattern": JOB_ID_PATTERN})
]

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "API keys are configured and none was sent."},
    403: {"description": "The API key sent is not valid."},
}


@router.post(
    "",
    status_code=202,
    dependencies=[MutatingAuth],
    responses={
        200: {
            "description": "A retry: this Idempotency-Key was seen with this spec; the job "
            "it created (header Idempotent-Replayed: true).",
            "model": JobOut,
        },
        **_AUTH,
        409: {"description": "This Idempotency-Key was used with a different spec."},
        422: {"description": "A spec field is invalid: `field` names it, `detail` says why."},
    },
    summary="Submit a training job",
)
def submit_job(
    spec: TrainSpec,
    response: Response,
    session: SessionDep,
    queue: QueueDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
            description="Any unique string (a UUID): a retry with the same key and spec gets "
            "the first job back (200) instead of a second job; kept "
            "GANSERVE_IDEMPOTENCY_TTL_S seconds (default one day).",
        ),
    ] = None,
) -> JobOut:
    """Validate the spec (dataset included), queue the job and return it; `Location` names it."""
    idempotency = (
        None
        if idempotency_key is None
        else jobs.Idempotency(idempotency_key, settings.idempotency_ttl_s)
    )
    submitted = jobs.submit_job(
        session, queue, spec, settings.data_dir, settings.max_job_attempts, idempotency
    )
    response.headers["Location"] = f"/v1/jobs/{submitted.job.id}"
    if submitted.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return jobs.job_view(submitted.job)


@router.get("", summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Jobs per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Jobs to skip.")] = 0,
) -> JobPage:
    return jobs.list_jobs(session, status, limit, offset)


@router.get("/{job_id}", responses=_NOT_FOUND, summary="A job's status and progress")
def get_job(job_id: JobId, session: SessionDep) -> JobOut:
    return jobs.job_view(jobs.get_job(session, job_id))


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    dependencies=[MutatingAuth],
    responses={**_AUTH, **_NOT_FOUND, 409: {"description": "The job has already finished."}},
    summary="Cancel a job",
)
async def cancel_job(job_id: JobId, session: SessionDep, redis: RedisDep) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its next step boundary
    (`cancel_requested` is true until its worker stops, keeping its last checkpoint)."""
    return jobs.job_view(await jobs.cancel_and_announce(session, redis, job_id))


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": (
                "Server-Sent Events: `id` = stream id, `event` = preparing | progress | "
                "evaluation | checkpoint | preview | model | warning | status, `data` = JSON. "
                "`preparing` ({step, total, what, message}) reports one-time work before the "
                "first step. The stream ends after the terminal `status` event."
            ),
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **_NOT_FOUND,
        422: {"description": "The event id to resume after is malformed."},
    },
    summary="Follow a job's events",
)
async def job_events(
    job_id: JobId,
    context: ContextDep,
    last_event_id: Annotated[
        str | None,
        Query(
            description="Resume after this event id (as the Last-Event-ID header does).",
            json_schema_extra={"pattern": STREAM_ID_PATTERN},
        ),
    ] = None,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", include_in_schema=False)
    ] = None,
) -> EventSourceResponse:
    """Replays the job's events from the start (or after the last one seen), then follows."""
    after = parse_last_event_id(last_event_id_header or last_event_id)
    await jobs.require_job_async(context.store, job_id)
    stream = job_event_stream(context.store, context.redis, job_id, after)
    return EventSourceResponse(stream, ping=PING_S)


@router.get("/{job_id}/history", responses=_NOT_FOUND, summary="Loss and metric series")
def job_history(
    job_id: JobId,
    session: SessionDep,
    series: Annotated[
        list[Annotated[str, Field(json_schema_extra={"pattern": SERIES_PATTERN})]] | None,
        Query(description="Only these series (repeat the parameter)."),
    ] = None,
    after_step: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="Only points after this step.")
    ] = None,
) -> JobHistory:
    return jobs.job_history(session, job_id, series, after_step)


@router.get(
    "/{job_id}/history.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "Loss and metric curves."},
        404: {"description": "No such job."},
    },
    summary="The loss and metric curves, drawn server-side",
)
def job_history_png(job_id: JobId, session: SessionDep, scale: HistoryScale = 1) -> Response:
    history = jobs.job_history(session, job_id)
    title = f"job {history.job_id} — step {history.step}"
    png = render_history_png(history.series, title, scale=scale)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.get(
    "/{job_id}/preview.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The latest fixed-noise grid."},
        304: {"description": "Unchanged since the ETag sent in If-None-Match."},
        404: {"description": "No such job, or no preview yet."},
        413: {"description": "`scale` over GANSERVE_MAX_SCALE or the output pixel limit."},
    },
    summary="The latest preview grid",
)
def job_preview(
    job_id: JobId,
    session: SessionDep,
    artifacts: ArtifactsDep,
    settings: SettingsDep,
    scale: PreviewScale = 1,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    if scale > settings.max_scale:
        raise PayloadTooLargeError(
            f"scale: at most {settings.max_scale}, got {scale}",
            field="scale",
            limit=settings.max_scale,
        )
    preview = jobs.read_preview(session, artifacts, job_id)
    etag = preview.etag if scale == 1 else f'{preview.etag[:-1]}-x{scale}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if jobs.etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    content = preview.content if scale == 1 else _upscaled_png(preview.content, scale, settings)
    return Response(content, media_type="image/png", headers=headers)


def _upscaled_png(png: bytes, scale: int, settings: Settings) -> bytes:
    """The stored preview grid, `scale` times larger (nearest neighbour, pixels stay square)."""
    with Image.open(io.BytesIO(png)) as image:
        pixels = image.width * image.height * scale * scale
        if pixels > settings.max_output_pixels:
            raise PayloadTooLargeError(
                f"scale: the preview would have {pixels} pixels, above the limit of "
                f"{settings.max_output_pixels} per response",
                field="scale",
                limit=settings.max_output_pixels,
            )
        array = np.asarray(image.convert("L" if image.mode in ("L", "1") else "RGB"))
    if array.ndim == 2:
        array = array[:, :, None]  # (H, W) -> (H, W, 1)
    return encode_png(upscale(torch.from_numpy(array.copy()), scale))
