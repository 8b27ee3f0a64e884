"""Routes: the model registry and sampling (DESIGN §4 Models, §8).

Logic lives in service.registry (versions, aliases) and service.sampling (images).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from ganserve.service import registry, sampling
from ganserve.service.deps import (
    ArtifactsDep,
    GeneratorsDep,
    MutatingAuth,
    SamplingAuth,
    SessionDep,
    SettingsDep,
)
from ganserve.service.model_schemas import (
    MAX_SEED,
    MIN_TRUNCATION,
    AliasIn,
    AliasOut,
    BulkSamplesIn,
    ModelList,
    ModelOut,
    VersionOut,
)

router = APIRouter(prefix="/v1/models", tags=["models"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "API keys are configured and none was sent."},
    403: {"description": "The API key sent is not valid."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such model, version or alias; `detail` names those that exist."}
}
_LIMITS: dict[int | str, dict[str, Any]] = {
    413: {"description": "Over a sampling limit (`field` names it, `limit` is the bound)."},
    422: {"description": "A parameter the model cannot take (`field`, valid values)."},
}
_PNG: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {}},
        "description": "The PNG; headers X-Model-Name, X-Model-Version, ETag, Cache-Control.",
    },
    304: {"description": "If-None-Match matched the ETag: nothing rendered."},
}

ModelName = Annotated[str, Path(description="The model's name.")]
VersionNumber = Annotated[int, Path(ge=1, description="A version number.")]
VersionRef = Annotated[
    str, Query(min_length=1, description="A version number, or an alias (`latest`, ...).")
]
Truncation = Annotated[
    float | None,
    Query(
        ge=MIN_TRUNCATION,
        allow_inf_nan=False,
        description="Redraw noise entries with |z| above this (truncation trick).",
    ),
]
Label = Annotated[
    int | None,
    Query(description="Conditional models: the class (0..classes-1); unset: drawn per seed."),
]
Scale = Annotated[int, Query(ge=1, description="Integer upscaling (nearest neighbour).")]
IfNoneMatch = Annotated[str | None, Header()]


def _response(rendered: sampling.Rendered) -> Response:
    return Response(
        rendered.body,
        status_code=rendered.status,
        media_type=rendered.media_type,
        headers=rendered.headers,
    )


@router.get("", summary="List models")
def list_models(session: SessionDep) -> ModelList:
    return registry.list_models(session)


@router.get("/{name}", responses=_NOT_FOUND, summary="A model with its versions and aliases")
def get_model(name: ModelName, session: SessionDep) -> ModelOut:
    return registry.get_model(session, name)


@router.get("/{name}/versions/{version}", responses=_NOT_FOUND, summary="One version")
def get_version(name: ModelName, version: VersionNumber, session: SessionDep) -> VersionOut:
    return registry.get_version(session, name, version)


@router.delete(
    "/{name}/versions/{version}",
    status_code=204,
    dependencies=[MutatingAuth],
    responses={**_AUTH, **_NOT_FOUND},
    summary="Delete a version (its number is never reused; `latest` moves back)",
)
def delete_version(
    name: ModelName,
    version: VersionNumber,
    session: SessionDep,
    artifacts: ArtifactsDep,
    generators: GeneratorsDep,
) -> Response:
    registry.delete_version(session, artifacts, generators, name, version)
    return Response(status_code=204)


@router.put(
    "/{name}/aliases/{alias}",
    dependencies=[MutatingAuth],
    responses={
        **_AUTH,
        **_NOT_FOUND,
        422: {"description": "`latest` is implicit and cannot be set; or a malformed alias."},
    },
    summary="Point an alias at a version (create or move it)",
)
def set_alias(name: ModelName, alias: str, body: AliasIn, session: SessionDep) -> AliasOut:
    return registry.set_alias(session, name, alias, body.version)


@router.delete(
    "/{name}/aliases/{alias}",
    status_code=204,
    dependencies=[MutatingAuth],
    responses={
        **_AUTH,
        **_NOT_FOUND,
        422: {"description": "`latest` is implicit and cannot be deleted."},
    },
    summary="Delete an alias",
)
def delete_alias(name: ModelName, alias: str, session: SessionDep) -> Response:
    registry.delete_alias(session, name, alias)
    return Response(status_code=204)


@router.get(
    "/{name}/samples.png",
    dependencies=[SamplingAuth],
    response_class=Response,
    responses={**_PNG, **_AUTH, **_NOT_FOUND, **_LIMITS},
    summary="Sample a PNG: one image (n=1) or a grid",
)
async def samples_png(
    name: ModelName,
    generators: GeneratorsDep,
    settings: SettingsDep,
    seed: Annotated[int, Query(ge=0, le=MAX_SEED, description="Image i uses seed + i.")] = 0,
    n: Annotated[int, Query(ge=1, description="Images: 1 = one image, more = a grid.")] = 1,
    nrow: Annotated[int | None, Query(ge=1, description="Grid images per row.")] = None,
    label: Label = None,
    truncation: Truncation = None,
    version: VersionRef = "latest",
    scale: Scale = 1,
    if_none_match: IfNoneMatch = None,
) -> Response:
    rendered = await sampling.samples_png(
        generators,
        settings,
        name,
        seed=seed,
        n=n,
        nrow=nrow,
        label=label,
        truncation=truncation,
        version=version,
        scale=scale,
        if_none_match=if_none_match,
    )
    return _response(rendered)


@router.post(
    "/{name}/samples",
    dependencies=[SamplingAuth],
    response_class=Response,
    responses={
        200: {
            "content": {"application/zip": {}, "application/octet-stream": {}},
            "description": "A zip of PNGs with labels.csv, or an .npz (attachment).",
        },
        **_AUTH,
        **_NOT_FOUND,
        **_LIMITS,
    },
    summary="Bulk samples as a zip of PNGs or an npz",
)
async def bulk_samples(
    name: ModelName, body: BulkSamplesIn, generators: GeneratorsDep, settings: SettingsDep
) -> Response:
    return _response(await sampling.bulk_samples(generators, settings, name, body))


@router.get(
    "/{name}/interpolation.png",
    dependencies=[SamplingAuth],
    response_class=Response,
    responses={**_PNG, **_AUTH, **_NOT_FOUND, **_LIMITS},
    summary="A strip of images between two seeds",
)
async def interpolation_png(
    name: ModelName,
    generators: GeneratorsDep,
    settings: SettingsDep,
    seed_a: Annotated[int, Query(ge=0, le=MAX_SEED, description="First image's seed.")],
    seed_b: Annotated[int, Query(ge=0, le=MAX_SEED, description="Last image's seed.")],
    steps: Annotated[
        int, Query(ge=sampling.MIN_STEPS, le=sampling.MAX_STEPS, description="Images.")
    ] = 8,
    label: Label = None,
    truncation: Truncation = None,
    version: VersionRef = "latest",
    scale: Scale = 1,
    if_none_match: IfNoneMatch = None,
) -> Response:
    rendered = await sampling.interpolation_png(
        generators,
        settings,
        name,
        seed_a=seed_a,
        seed_b=seed_b,
        steps=steps,
        label=label,
        truncation=truncation,
        version=version,
        scale=scale,
        if_none_match=if_none_match,
    )
    return _response(rendered)
