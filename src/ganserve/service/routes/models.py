"""Routes: the model registry and sampling (DESIGN §4 Models, §8).

Logic lives in service.registry (versions, aliases) and service.sampling (images); a route
validates, calls one function and maps its result. Deleting a version drops it from the
generator cache here, so the registry logic knows nothing of the cache.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ganserve.service.context import AppContext
from ganserve.service.deps import (
    ArtifactsDep,
    GeneratorsDep,
    MutatingAuth,
    SamplingAuth,
    SessionDep,
    SettingsDep,
    require_key_for_sampling,
)
from ganserve.service.errors import TranslationModelError
from ganserve.service.registry import versions as registry
from ganserve.service.registry.schemas import (
    MAX_SEED,
    MIN_TRUNCATION,
    TRUNCATION_HELP,
    AliasIn,
    AliasOut,
    BulkSamplesIn,
    ModelList,
    ModelOut,
    VersionOut,
)
from ganserve.service.routes.direct import DirectRoute
from ganserve.service.sampling import answer as sampling
from ganserve.service.sampling.caching import Rendered
from ganserve.service.sampling.limits import MAX_STEPS, MIN_STEPS
from ganserve.service.translation import translation_grid_png, translators_of
from ganserve.store.names import (
    ALIAS_PATTERN,
    AUTOMATIC_ALIASES,
    IMPLICIT_ALIASES,
    MODEL_NAME_PATTERN,
    VERSION_REF_EXACT_PATTERN,
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

# Identifier patterns are documented, not enforced by FastAPI: the service's own checks
# (store/names.py) answer with messages that say what is wrong.
ModelName = Annotated[
    str, Path(description="The model's name.", json_schema_extra={"pattern": MODEL_NAME_PATTERN})
]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="A version number.")]
Alias = Annotated[
    str,
    Path(
        description="A settable alias: not `latest` (implicit) nor `best` (kept by the workers).",
        json_schema_extra={
            "pattern": ALIAS_PATTERN,
            "not": {"enum": sorted(IMPLICIT_ALIASES | AUTOMATIC_ALIASES)},
        },
    ),
]
_LABEL = (
    "Conditional models: the class (0..classes-1, the version's `classes`); unset: drawn per "
    "seed. A label the version does not have is a 422."
)
_SEED = "Image i uses seed + i (wrapping past 2**63 - 1 to 0)."
_SCALE = "Integer upscaling (nearest neighbour); at most GANSERVE_MAX_SCALE."
_VERSION = "A version number, or an alias (`latest`, ...)."
_VERSION_SCHEMA: dict[str, Any] = {"pattern": VERSION_REF_EXACT_PATTERN}
VersionRef = Annotated[
    str, Query(min_length=1, description=_VERSION, json_schema_extra=_VERSION_SCHEMA)
]
Truncation = Annotated[
    float | None, Query(ge=MIN_TRUNCATION, allow_inf_nan=False, description=TRUNCATION_HELP)
]
# Documented, not enforced here: the model's own check names its classes.
_LABEL_SCHEMA: dict[str, Any] = {"minimum": 0}
Label = Annotated[int | None, Query(description=_LABEL, json_schema_extra=_LABEL_SCHEMA)]
Scale = Annotated[int, Query(ge=1, description=_SCALE)]
IfNoneMatch = Annotated[str | None, Header()]


def _response(rendered: Rendered) -> Response:
    return Response(
        rendered.body,
        status_code=rendered.status,
        media_type=rendered.media_type,
        headers=rendered.headers,
    )


class SamplesQuery(BaseModel):
    """The query of GET samples.png; validated by `samples_png` itself (see there)."""

    model_config = ConfigDict(extra="ignore")

    seed: int = Field(0, ge=0, le=MAX_SEED, description=_SEED)
    n: int = Field(
        1, ge=1, description="Images: 1 = one image, more = a grid; at most "
        "GANSERVE_MAX_SAMPLES_PER_REQUEST. The grid's pixels are bounded too "
        "(GANSERVE_MAX_OUTPUT_PIXELS, with the model's image size: 413 over it).",
    )  # fmt: skip
    nrow: int | None = Field(None, ge=1, description="Grid images per row.")
    label: int | None = Field(None, description=_LABEL, json_schema_extra=_LABEL_SCHEMA)
    truncation: float | None = Field(
        None, ge=MIN_TRUNCATION, allow_inf_nan=False, description=TRUNCATION_HELP
    )
    version: str = Field(
        "latest", min_length=1, description=_VERSION, json_schema_extra=_VERSION_SCHEMA
    )
    scale: int = Field(1, ge=1, description=_SCALE)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI parameters of a query model, as FastAPI writes them for declared parameters."""
    schema = model.model_json_schema()
    parameters: list[dict[str, Any]] = []
    for name, prop in schema["properties"].items():
        if prop.get("default", ...) is None:
            prop = {key: value for key, value in prop.items() if key != "default"}
        parameter = {"name": name, "in": "query", "required": False, "schema": prop}
        parameters.append({**parameter, "description": prop["description"]})
    header = {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "If-None-Match"}
    parameters.append(
        {"name": "if-none-match", "in": "header", "required": False, "schema": header}
    )
    return parameters


def _samples_query(request: Request) -> SamplesQuery:
    try:
        return SamplesQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in errors]) from None


async def samples_png(name: ModelName, request: Request) -> Response:
    # The hottest route. Its query is one pydantic model validated here and the context is
    # read from the app: FastAPI's per-parameter validation and dependency solving cost
    # several times the rest of the request (bench/README.md). Same checks, same 422s, same
    # OpenAPI parameters (openapi_extra). With nothing left to solve, a DirectRoute calls it.
    context: AppContext = request.app.state.context
    settings = context.settings
    await require_key_for_sampling(request, settings)
    query = _samples_query(request)
    try:
        rendered = await sampling.samples_png(
            context.generators,
            context.batchers,
            settings,
            name,
            seed=query.seed,
            n=query.n,
            nrow=query.nrow,
            label=query.label,
            truncation=query.truncation,
            version=query.version,
            scale=query.scale,
            if_none_match=request.headers.get("if-none-match"),
        )
    except TranslationModelError as error:
        sent = [o for o in ("label", "truncation") if getattr(query, o) is not None]
        if sent:  # noise options: 422 naming the option sent
            raise TranslationModelError(error.detail, field=sent[0]) from None
        # a CycleGAN model: real inputs chosen by seed, their translations, reconstructions
        answer = await anyio.to_thread.run_sync(
            lambda: translation_grid_png(
                translators_of(context), settings, name, version=query.version,
                seed=query.seed, n=query.n, scale=query.scale,
                if_none_match=request.headers.get("if-none-match"),
            )
        )  # fmt: skip
        return Response(answer.body, answer.status, answer.headers, answer.media_type)
    return _response(rendered)


# First in the router: the hottest route is matched before the others are tried.
router.add_api_route(
    "/{name}/samples.png",
    samples_png,
    methods=["GET"],
    route_class_override=DirectRoute,
    response_class=Response,
    responses={**_PNG, **_AUTH, **_NOT_FOUND, **_LIMITS},
    openapi_extra={"parameters": _query_parameters(SamplesQuery)},
    summary="Sample a PNG: one image (n=1) or a grid",
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
    registry.delete_version(session, artifacts, name, version)
    generators.invalidate(name, version)  # committed: no request loads it again
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
def set_alias(name: ModelName, alias: Alias, body: AliasIn, session: SessionDep) -> AliasOut:
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
def delete_alias(name: ModelName, alias: Alias, session: SessionDep) -> Response:
    registry.delete_alias(session, name, alias)
    return Response(status_code=204)


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
    steps: Annotated[int, Query(ge=MIN_STEPS, le=MAX_STEPS, description="Images.")] = 8,
    label: Label = None,
    truncation: Truncation = None,
    version: VersionRef = "latest",
    scale: Scale = 1,
    if_none_match: IfNoneMatch = None,
) -> Response:
    rendered = await sampling.interpolation(
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
