"""Route: translate an uploaded image with a CycleGAN model (DESIGN §8, issue 16).

`POST /v1/models/{name}/translate?direction=a2b|b2a[&keep_size=true][&version=...]` with the
raw image as the body (`image/png`, `image/jpeg`) answers the translated PNG; a zip of such
images (`application/zip`) answers a zip of their translations. Logic: service.translation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Header, Path, Query, Request, Response

from ganserve.service.context import AppContext
from ganserve.service.deps import require_key_for_sampling
from ganserve.service.errors import PayloadTooLargeError
from ganserve.service.translation import (
    IMAGE_TYPES,
    ZIP_TYPE,
    answer_translate,
    translators_of,
)
from ganserve.store.names import MODEL_NAME_PATTERN, VERSION_REF_EXACT_PATTERN

router = APIRouter(prefix="/v1/models", tags=["models"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": _BINARY, ZIP_TYPE: _BINARY},
        "description": "The translated PNG (or a zip of them); headers X-Model-Name, "
        "X-Model-Version, X-Direction, ETag, Cache-Control.",
    },
    304: {"description": "If-None-Match matched the ETag: nothing translated."},
    401: {"description": "API keys protect sampling and none was sent."},
    403: {"description": "The API key sent is not valid."},
    404: {"description": "No such model, version or alias; `detail` names those that exist."},
    413: {"description": "Body, picture pixels or zip entries over a limit (`field`, `limit`)."},
    422: {
        "description": "Not a PNG/JPEG/zip, a bad direction, or a model that does not "
        "translate (it samples from noise)."
    },
}
_BODY = {
    "requestBody": {
        "required": True,
        "description": "The picture (any size and channels: converted to the model's domain) "
        "or a zip of pictures.",
        "content": dict.fromkeys((*IMAGE_TYPES, ZIP_TYPE), _BINARY),
    }
}

Direction = Annotated[
    Literal["a2b", "b2a"], Query(description="a2b: domain A to B (G); b2a: B to A (F).")
]
KeepSize = Annotated[
    bool,
    Query(
        description="Translate at the picture's own size (padded to the network's stride and "
        "cropped back) instead of centre-cropping and resizing it to the model's size."
    ),
]
VersionRef = Annotated[
    str,
    Query(
        min_length=1,
        max_length=64,
        description="A version number or an alias.",
        json_schema_extra={"pattern": VERSION_REF_EXACT_PATTERN},
    ),
]
ModelName = Annotated[
    str, Path(description="The model's name.", json_schema_extra={"pattern": MODEL_NAME_PATTERN})
]


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 (field "body") once over `limit`; never buffered beyond it."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLargeError(
            f"body: over the limit of {limit} bytes (GANSERVE_MAX_BODY_BYTES)",
            field="body", limit=limit,
        )  # fmt: skip
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLargeError(
                f"body: over the limit of {limit} bytes (GANSERVE_MAX_BODY_BYTES)",
                field="body", limit=limit,
            )  # fmt: skip
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/{name}/translate",
    response_class=Response,
    responses=_RESPONSES,
    openapi_extra=_BODY,
    operation_id="translate",
    summary="Translate a picture (or a zip of pictures) with a CycleGAN model",
)
async def translate(
    name: ModelName,
    request: Request,
    direction: Direction = "a2b",
    keep_size: KeepSize = False,
    version: VersionRef = "latest",
    content_type: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    context: AppContext = request.app.state.context
    await require_key_for_sampling(request, context.settings)
    body = await _bounded_body(request, context.settings.max_body_bytes)
    answer = await anyio.to_thread.run_sync(
        lambda: answer_translate(
            translators_of(context), context.settings, name, version=version,
            direction=direction, keep_size=keep_size, content_type=content_type, body=body,
            if_none_match=if_none_match,
        )
    )  # fmt: skip
    return Response(answer.body, answer.status, answer.headers, answer.media_type)
