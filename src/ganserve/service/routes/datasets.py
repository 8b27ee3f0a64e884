"""Routes: datasets (DESIGN §4 Datasets): the built-ins and the uploads in the data dir."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as PathParameter

from ganserve.gan.data import (
    BUILTIN_DATASETS,
    UPLOAD_NAME_PATTERN,
    describe_dataset,
    packed_dataset_path,
)
from ganserve.gan.errors import DatasetError
from ganserve.service.context import AppContext
from ganserve.service.datasets.uploads import (
    MAX_UPLOAD_IMAGE_SIZE,
    MIN_UPLOAD_IMAGE_SIZE,
    UploadLimits,
    ingest_upload,
)
from ganserve.service.deps import MutatingAuth, SettingsDep
from ganserve.service.errors import ConflictError, NotFoundError
from ganserve.service.problems import redact_paths
from ganserve.service.schemas import DatasetList, DatasetOut
from ganserve.store import idempotency as key_store
from ganserve.store.idempotency import KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN

log = logging.getLogger(__name__)

router = APIRouter(tags=["datasets"])


@router.get("/v1/datasets", summary="Built-in and uploaded datasets")
def list_datasets(settings: SettingsDep) -> DatasetList:
    """Every built-in (with whether its files are present) and every uploaded dataset."""
    return dataset_list(settings.data_dir)


def dataset_list(data_dir: Path) -> DatasetList:
    """The built-ins in their usual order, then the uploads by name (file headers only)."""
    uploads = sorted(
        path.stem
        for path in (data_dir / "datasets").glob("*.npz")
        if UPLOAD_NAME_PATTERN.fullmatch(path.stem) and path.stem not in BUILTIN_DATASETS
    )
    return DatasetList(items=[_describe(name, data_dir) for name in (*BUILTIN_DATASETS, *uploads)])


def _describe(name: str, data_dir: Path) -> DatasetOut:
    try:
        info = describe_dataset(name, data_dir)
    except DatasetError as error:  # an unreadable upload: listed, marked unavailable
        log.warning("dataset %s is unreadable: %s", name, error)
        return DatasetOut(
            name=name, builtin=False, available=False, image_size=0, channels=0, classes=[],
            num_classes=0, size=0, hint=redact_paths(str(error), data_dir),
        )  # fmt: skip
    return DatasetOut(
        name=name,
        builtin=info["builtin"],
        available=info["available"],
        image_size=info["image_size"],
        channels=info["channels"],
        classes=info["classes"],
        num_classes=len(info["classes"]),
        size=info["size"],
        hint=None
        if info["missing_files_hint"] is None
        else redact_paths(info["missing_files_hint"], data_dir),
    )


# The body is read from the request stream by the route itself (so FastAPI never buffers it);
# this tells the OpenAPI document, and clients generated from it, what to send.
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "A zip of PNG/JPEG images: one folder per class (labels = sorted folder names), or "
            "images at the top (one class); either may sit inside a single wrapper folder. "
            "Send it as the raw body (curl --data-binary @images.zip -H 'Content-Type: "
            "application/zip') or as the `file` field of a multipart form."
        ),
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


class Channels(IntEnum):
    """Colour channels of an uploaded dataset (a query parameter: 1 or 3)."""

    gray = 1
    rgb = 3


_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


@router.post(
    "/v1/datasets",
    summary="Upload a dataset (a zip of PNG/JPEG images)",
    status_code=201,
    dependencies=[MutatingAuth],
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {
            "description": "A retry: this Idempotency-Key was seen with this upload; the "
            "dataset it made (header Idempotent-Replayed: true).",
            "model": DatasetOut,
        },
        409: {
            "description": "The name is taken, or the Idempotency-Key came with another upload.",
            **_PROBLEM,
        },
        413: {"description": "Over an upload limit (body, entries, expansion).", **_PROBLEM},
        422: {"description": "Not a zip of acceptable images, or a bad name.", **_PROBLEM},
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    settings: SettingsDep,
    name: Annotated[
        str,
        Query(
            description=(
                "The new dataset's name: 1 to 64 characters from lowercase letters, digits, "
                "'.', '_' and '-', starting with a letter or digit; not a built-in's name."
            ),
            # Documented, not enforced here: the route's own check says what is wrong.
            json_schema_extra={"pattern": UPLOAD_NAME_PATTERN.pattern},
        ),
    ],
    image_size: Annotated[
        int | None,
        Query(
            ge=MIN_UPLOAD_IMAGE_SIZE,
            le=MAX_UPLOAD_IMAGE_SIZE,
            description=(
                "Side in pixels every image is center-cropped and resized to (dcgan builds "
                "8, 14, 16, 28, 32, 56 and 64). Default: the smallest image's side, at most 64."
            ),
        ),
    ] = None,
    channels: Annotated[
        Channels | None,
        Query(description="1 = grayscale, 3 = RGB. Default: 1 when every image is grayscale."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
            description="Any unique string: a retry with the same key and upload gets the "
            "dataset back (200) instead of a 409 for a taken name; kept "
            "GANSERVE_IDEMPOTENCY_TTL_S seconds.",
        ),
    ] = None,
) -> DatasetOut:
    """Decode, validate and resize the images once and store them packed; the new dataset
    is then listed in GET /v1/datasets and can be named in a training spec.

    Limits (GANSERVE_MAX_UPLOAD_*): body bytes (checked while it streams in), zip entries,
    total uncompressed bytes, per-entry compression ratio, pixels per image. Links, devices,
    absolute paths and '..' entries are refused, as is anything that is not a PNG or JPEG.
    """
    context: AppContext = request.app.state.context
    options = f"{name}\n{image_size}\n{None if channels is None else int(channels)}\n"
    digest = hashlib.sha256(options.encode())
    if idempotency_key is not None:
        first = await anyio.to_thread.run_sync(_lookup, context, idempotency_key)
        if first is not None:  # a retry: same bytes -> the dataset it made; else 409
            async for chunk in request.stream():
                digest.update(chunk)
            if digest.hexdigest() != first[0]:
                raise key_store.conflict(idempotency_key)
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
            response.headers["Location"] = f"/v1/datasets/{first[1]}"
            return _describe(first[1], settings.data_dir)

    async def hashed() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            digest.update(chunk)
            yield chunk

    await ingest_upload(
        hashed(),
        name=name,
        data_dir=settings.data_dir,
        limits=UploadLimits.from_settings(settings),
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
        image_size=image_size,
        channels=None if channels is None else int(channels),
    )
    if idempotency_key is not None:
        ttl_s = settings.idempotency_ttl_s
        await anyio.to_thread.run_sync(
            _remember, context, idempotency_key, digest.hexdigest(), name, ttl_s
        )
    response.headers["Location"] = f"/v1/datasets/{name}"
    return _describe(name, settings.data_dir)


def _lookup(context: AppContext, key: str) -> tuple[str, str] | None:
    with context.store.session() as session:
        return key_store.lookup(session, "datasets", key)


def _remember(context: AppContext, key: str, fingerprint: str, name: str, ttl_s: float) -> None:
    with context.store.session() as session:
        key_store.remember(session, "datasets", key, fingerprint, name, ttl_s)


# Built-in names follow the upload rule too; documented, not enforced (unknown names: 404).
DatasetName = Annotated[
    str,
    PathParameter(
        description="A built-in or uploaded dataset's name.",
        json_schema_extra={"pattern": UPLOAD_NAME_PATTERN.pattern},
    ),
]


def _known(name: str, data_dir: Path) -> bool:
    if name in BUILTIN_DATASETS:
        return True
    return (
        bool(UPLOAD_NAME_PATTERN.fullmatch(name)) and packed_dataset_path(data_dir, name).is_file()
    )


@router.get(
    "/v1/datasets/{name}",
    summary="One dataset",
    responses={404: {"description": "No such dataset.", **_PROBLEM}},
)
def get_dataset(name: DatasetName, settings: SettingsDep) -> DatasetOut:
    """A built-in or uploaded dataset, as listed by GET /v1/datasets."""
    if not _known(name, settings.data_dir):
        raise NotFoundError(f"no dataset named {name!r}; GET /v1/datasets lists them")
    return _describe(name, settings.data_dir)


@router.delete(
    "/v1/datasets/{name}",
    summary="Delete an uploaded dataset",
    status_code=204,
    dependencies=[MutatingAuth],
    responses={
        404: {"description": "No such uploaded dataset.", **_PROBLEM},
        409: {"description": "Built-in datasets cannot be deleted.", **_PROBLEM},
    },
)
def delete_dataset(name: DatasetName, settings: SettingsDep) -> Response:
    """Remove an uploaded dataset's packed file. Models trained on it are kept."""
    if name in BUILTIN_DATASETS:
        raise ConflictError(f"{name!r} is a built-in dataset; it cannot be deleted")
    if not _known(name, settings.data_dir):
        raise NotFoundError(f"no uploaded dataset named {name!r}; GET /v1/datasets lists them")
    try:
        packed_dataset_path(settings.data_dir, name).unlink()
    except FileNotFoundError:  # deleted concurrently
        raise NotFoundError(f"no uploaded dataset named {name!r}") from None
    log.info("dataset %s deleted", name)
    return Response(status_code=204)
