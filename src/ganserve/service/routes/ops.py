"""Routes: operations (DESIGN §4): liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import anyio
import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ganserve.service.deps import ContextDep
from ganserve.service.errors import UnavailableError
from ganserve.service.operations.telemetry import render_metrics
from ganserve.service.schemas import Health, Readiness

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

READY_TIMEOUT_S = 2.0  # per check


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    responses={503: {"description": "The database or the broker is unreachable (named)."}},
    summary="Readiness: the database and the broker answer",
)
async def readyz(context: ContextDep) -> Readiness:
    database, broker = await asyncio.gather(
        _check("database", anyio.to_thread.run_sync(context.store.ping, abandon_on_cancel=True)),
        _check("broker", context.redis.ping()),
    )
    checks = {"database": database, "broker": broker}
    failing = [name for name, result in checks.items() if result != "ok"]
    if failing:
        detail = "; ".join(f"{name}: {checks[name]}" for name in failing)
        raise UnavailableError(
            f"not ready: {detail}", checks=checks, failing=failing, dependency=failing[0]
        )
    return Readiness(status="ready", checks=checks)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    summary="Prometheus metrics of this API process",
)
async def metrics(context: ContextDep) -> Response:
    return Response(await render_metrics(context), media_type=CONTENT_TYPE_LATEST)


async def _check(name: str, probe: Awaitable[object]) -> str:
    """'ok', or what went wrong in words that reveal nothing of the deployment: the driver's
    error (hosts, ports, paths) goes to the log only."""
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            await probe
    except TimeoutError:
        log.warning("readiness: the %s gave no answer within %g s", name, READY_TIMEOUT_S)
        return f"no answer within {READY_TIMEOUT_S:g} s"
    except Exception as error:  # any failure means not ready; say which dependency
        log.warning("readiness: the %s is unreachable: %r", name, error)
        return "unreachable"
    return "ok"
