"""The FastAPI application factory: `uvicorn --factory ganserve.service.app:create_app`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
import torch
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from ganserve.service.context import AppContext
from ganserve.service.errors import ServiceError
from ganserve.service.guard import RequestGuard
from ganserve.service.jobs.queue import TrainingQueue
from ganserve.service.openapi import install_contract, operation_id
from ganserve.service.operations.reaper import Reaper
from ganserve.service.operations.telemetry import MetricsMiddleware
from ganserve.service.problems import install_problem_handlers
from ganserve.service.routes import datasets, jobs, models, ops, translate, web
from ganserve.service.sampling.generator_cache import GeneratorCache
from ganserve.settings import Settings, get_settings
from ganserve.store import Store

log = logging.getLogger(__name__)


class StartupError(ServiceError):
    """The API cannot start with this configuration."""


def check_startup(settings: Settings) -> str:
    """The broker URL to use; refuses configurations that would be unsafe or cannot work."""
    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "").strip() not in ("", "0"):
        raise StartupError(
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: torch.load would unpickle code; unset it"
        )
    if not settings.redis_url:
        raise StartupError(
            "REDIS_URL is not set: run `ganserve up` (which starts a private broker) "
            "or point REDIS_URL at a Redis server"
        )
    return settings.redis_url


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis_url = check_startup(settings)
        torch.set_num_threads(settings.torch_threads)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.from_settings(settings)  # applies migrations
        context = AppContext(
            settings=settings,
            store=store,
            queue=TrainingQueue(redis_url, settings.training_queue),
            redis=redis.asyncio.Redis.from_url(redis_url),
            generators=GeneratorCache(store, capacity=settings.generator_cache_size),
        )
        app.state.context = context
        # Jobs of lost workers and lost messages: see service/operations/reaper.py.
        reaper = Reaper(store, context.queue, settings.requeue_after_s)
        reaper_task = asyncio.create_task(
            reaper.run_forever(settings.reaper_interval_s, context.redis), name="ganserve-reaper"
        )
        log.info("ganserve API ready (data dir %s)", settings.data_dir.resolve())
        try:
            yield
        finally:
            reaper_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper_task
            await context.redis.aclose()
            context.queue.close()
            context.generators.close()
            store.close()

    # /docs and /redoc with their assets served from the fastapi-offline package: no CDN.
    app: FastAPI = FastAPIOffline(
        title="ganserve",
        version="1",
        summary="Train GANs on request and serve their generators.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    install_problem_handlers(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestGuard, settings=settings)  # outermost: before any body is read
    app.include_router(models.router)  # first: requests match routes in order, samples.png hottest
    app.include_router(ops.router)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(translate.router)  # CycleGAN models: POST /v1/models/{name}/translate
    app.include_router(web.router)  # the web page at / (not in the OpenAPI document)
    install_contract(app, settings)  # errors, binary bodies, security, operation ids
    return app
