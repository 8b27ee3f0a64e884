"""FastAPI dependencies, declared once as Annotated aliases.

The accessors are `async def` because they do no I/O: FastAPI runs plain `def`
dependencies in the thread pool, a hop each that a sampling request should not pay.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import redis.asyncio
from fastapi import Depends, Request

from ganserve.service.context import AppContext
from ganserve.service.guard import check_key
from ganserve.service.jobs.queue import TrainingQueue
from ganserve.service.sampling.generator_cache import GeneratorCache
from ganserve.settings import Settings
from ganserve.store import ArtifactStore, Session


async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_settings_dep(context: ContextDep) -> Settings:
    return context.settings


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.store.session() as session:
        yield session


async def get_artifacts(context: ContextDep) -> ArtifactStore:
    return context.store.artifacts


async def get_queue(context: ContextDep) -> TrainingQueue:
    return context.queue


async def get_redis(context: ContextDep) -> redis.asyncio.Redis:
    return context.redis


async def get_generators(context: ContextDep) -> GeneratorCache:
    return context.generators


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": the session commits when the route returns, before the response is
# sent, so a client that reads right after a write sees it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]
QueueDep = Annotated[TrainingQueue, Depends(get_queue)]
RedisDep = Annotated[redis.asyncio.Redis, Depends(get_redis)]
GeneratorsDep = Annotated[GeneratorCache, Depends(get_generators)]


def _check_key(request: Request, settings: Settings) -> None:
    # The guard middleware has checked already (before the body); this keeps each route
    # safe on its own, with the same function.
    check_key(request.headers.get("authorization"), settings.api_keys)


async def require_key(request: Request, settings: SettingsDep) -> None:
    """Guards mutating routes when GANSERVE_API_KEYS is set."""
    _check_key(request, settings)


async def require_key_for_sampling(request: Request, settings: SettingsDep) -> None:
    """Guards sampling routes when keys are set and GANSERVE_PROTECT_SAMPLING is true."""
    if settings.protect_sampling:
        _check_key(request, settings)


MutatingAuth = Depends(require_key)
SamplingAuth = Depends(require_key_for_sampling)
