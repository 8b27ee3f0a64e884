"""DirectRoute: the hottest endpoint is called without FastAPI's dependency solving."""

from __future__ import annotations

from typing import Annotated, Any

import fastapi.routing
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.testclient import TestClient

from ganserve.service.routes.direct import DirectRoute


def _app(endpoint: object, path: str = "/things/{name}/{part}") -> FastAPI:
    router = APIRouter()
    router.add_api_route(path, endpoint, methods=["GET"], route_class_override=DirectRoute)  # type: ignore[arg-type]
    app = FastAPI()
    app.include_router(router)
    return app


async def _get(app: FastAPI, url: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(url)


@pytest.mark.anyio
async def test_the_endpoint_gets_the_path_parameters_and_the_request() -> None:
    async def endpoint(
        name: Annotated[str, PathParam(description="a name")], part: str, request: Request
    ) -> Response:
        if name == "missing":
            raise HTTPException(404, "no such thing")
        body = f"{name}/{part}?{request.query_params['q']}"
        return Response(body.encode(), headers={"X-Name": name})

    app = _app(endpoint)
    answer = await _get(app, "/things/a%20b/c?q=1")
    assert answer.status_code == 200
    assert answer.text == "a b/c?1" and answer.headers["x-name"] == "a b"
    missing = await _get(app, "/things/missing/c?q=1")  # the app's exception handlers still apply
    assert missing.status_code == 404 and missing.json() == {"detail": "no such thing"}
    operation = app.openapi()["paths"]["/things/{name}/{part}"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["name", "part"]


def _dependency() -> int:
    return 1


async def _with_query(name: str, request: Request, q: int = 0) -> Response:
    return Response()


async def _with_dependency(
    name: str, request: Request, one: Annotated[int, Depends(_dependency)]
) -> Response:
    return Response()


async def _with_int_path(name: int, request: Request) -> Response:
    return Response()


async def _without_request(name: str) -> Response:
    return Response()


def _sync(name: str, request: Request) -> Response:
    return Response()


@pytest.mark.parametrize(
    "endpoint", [_with_query, _with_dependency, _with_int_path, _without_request, _sync]
)
def test_an_endpoint_that_needs_more_is_refused_when_the_app_is_built(endpoint: object) -> None:
    with pytest.raises(TypeError, match="DirectRoute"):
        _app(endpoint, "/things/{name}")


def test_samples_png_is_answered_without_dependency_solving(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    solved: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*, request: Request, **kwargs: Any) -> Any:
        solved.append(request.url.path)
        return await solve(request=request, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    missing = client.get("/v1/models/no-such-model/samples.png?seed=3")
    assert missing.status_code == 404 and "no-such-model" in missing.json()["detail"]
    bad = client.get("/v1/models/no-such-model/samples.png?seed=-1")
    assert bad.status_code == 422 and "seed" in str(bad.json()["errors"])
    assert client.get("/v1/models").status_code == 200
    assert solved == ["/v1/models"]  # the other routes still solve theirs
