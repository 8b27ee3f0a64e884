"""A route class for the hottest endpoint: its handler calls the endpoint directly.

FastAPI's request handler solves the endpoint's dependencies on every request, even when
there are none to solve: for an `async def (name, request) -> Response` endpoint that is
about 40% of FastAPI's own cost per request (90 -> 53 us of CPU, bench/README.md).
`DirectRoute` calls such an endpoint with the request and the path parameters as they
arrived. Routing, the middleware, the exception handlers and the OpenAPI document are
FastAPI's as before. It refuses, when the app is built, any endpoint that would need more:
dependencies, query, header, cookie or body parameters (declare those in `openapi_extra`
and validate them in the endpoint, as samples.png does).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette._utils import is_async_callable


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint takes the path parameters (str) and `request` only."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        dependant = self.dependant
        extra = (
            dependant.dependencies
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.response_param_name
            or dependant.background_tasks_param_name
        )
        if extra or dependant.request_param_name != "request" or not is_async_callable(endpoint):
            raise TypeError(
                f"{path}: a DirectRoute endpoint is async and takes path parameters and `request`"
            )
        if any(field.field_info.annotation is not str for field in dependant.path_params):
            raise TypeError(f"{path}: a DirectRoute endpoint's path parameters are str")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(request=request, **request.path_params)
            return response

        return handler
