"""RFC 9457 problem details: every error response of the API goes through here."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

import kombu.exceptions
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ganserve.gan.errors import CheckpointError, ConfigError, DatasetError, GanError
from ganserve.service.errors import ServiceError
from ganserve.store.db import DriverError, outage_of
from ganserve.store.errors import (
    DatabaseUnavailableError,
    InvalidValueError,
    RecordNotFoundError,
    StaleAttemptError,
    StateConflictError,
    StoreError,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:ganserve:problem:"
RETRY_AFTER_S = 5  # what a 503 for an unreachable dependency tells clients to wait
DETAIL_CHARS = 1000  # a detail (which may quote the input) is cut there


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    title = title or HTTPStatus(status).phrase
    if len(detail) > DETAIL_CHARS:
        detail = detail[: DETAIL_CHARS - 1] + "…"
    body: dict[str, Any] = {
        "type": TYPE_BASE + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


DATA_DIR_SHOWN = "$GANSERVE_DATA_DIR"


def redact_paths(text: str, data_dir: Path) -> str:
    """`text` with the data dir's absolute path written as $GANSERVE_DATA_DIR: what a
    message may say of where files go, without revealing the server's layout."""
    for form in {str(data_dir.resolve()), str(data_dir.absolute())}:
        text = text.replace(form, DATA_DIR_SHOWN)
    return text


def _redacted(request: Request, text: str) -> str:
    context = getattr(request.app.state, "context", None)
    return text if context is None else redact_paths(text, context.settings.data_dir)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "noise", "dim") -> "noise.dim"; ("query", "seed") -> "seed"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [await _readable(request, e) for e in exc.errors()]
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = _field_of(tuple(first.get("loc", ())))
    detail = f"{field}: {first.get('msg', 'invalid value')}"
    shown = [{"field": _field_of(e.get("loc", ())), "message": e.get("msg", "")} for e in errors]
    return problem(422, detail, title="Invalid input", field=field, errors=shown)


async def _readable(request: Request, error: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's error in a person's words where its own are a parser's.

    A malformed JSON body comes as loc ("body", <char offset>), msg "JSON decode error": say
    where (line and column, 1-based) and why. A body that is not a JSON object - most often
    one sent without `Content-Type: application/json`, which is then not parsed at all -
    comes as "Input should be a valid dictionary": say that JSON is expected.
    """
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int):
        body = await request.body()
        offset = loc[1]
        line = body.count(b"\n", 0, offset) + 1
        column = offset - body.rfind(b"\n", 0, offset)  # rfind is -1 on the first line
        reason = str((error.get("ctx") or {}).get("error", "")).strip()
        message = f"invalid JSON at line {line}, column {column}"
        message += f": {reason}" if reason else ""
        return {**error, "loc": ("body",), "msg": message}
    if loc == ("body",) and error.get("type") in ("dict_type", "model_attributes_type"):
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type.lower():
            sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
            message = f"JSON expected: send the body as Content-Type: application/json ({sent})"
        else:
            message = "a JSON object is expected"
        return {**error, "msg": message}
    return error


async def _service(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return problem(exc.status, _redacted(request, exc.detail), title=exc.title, field=exc.field,
                   headers=headers, **exc.extra)  # fmt: skip


# Exceptions of the layers below the service -> (status, title). The most specific class
# listed wins; a GanError or StoreError not listed is a 500 (a bug or a broken artifact).
LOWER_LAYER_PROBLEMS: dict[type[Exception], tuple[int, str]] = {
    ConfigError: (422, "Invalid input"),
    DatasetError: (422, "Invalid input"),
    InvalidValueError: (422, "Invalid input"),
    RecordNotFoundError: (404, "Not found"),
    StateConflictError: (409, "Conflict"),
    StaleAttemptError: (409, "Conflict"),
    DatabaseUnavailableError: (503, "Service unavailable"),
    CheckpointError: (500, "Internal Server Error"),
}


def _problem_of(exc: Exception) -> tuple[int, str] | None:
    for cls in type(exc).__mro__:
        if cls in LOWER_LAYER_PROBLEMS:
            return LOWER_LAYER_PROBLEMS[cls]
    return None


async def _lower_layer(request: Request, exc: Exception) -> JSONResponse:
    status, title = _problem_of(exc) or (500, "Internal Server Error")
    field = "dataset" if isinstance(exc, DatasetError) else getattr(exc, "field", None)
    if isinstance(exc, CheckpointError):
        log.error("model artifact unusable: %s", exc)
        return problem(status, f"the model's files are unusable: {exc}")
    if isinstance(exc, DatabaseUnavailableError):
        return unavailable("database", str(exc))
    if status >= 500:
        log.exception("error from a lower layer", exc_info=exc)
    return problem(status, _redacted(request, str(exc)), title=title, field=field)


def unavailable(dependency: str, detail: str) -> JSONResponse:
    """503 naming the dependency that cannot be reached, with Retry-After."""
    return problem(
        503,
        detail,
        title="Service unavailable",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        dependency=dependency,
    )


async def _database(request: Request, exc: Exception) -> JSONResponse:
    # The driver's message names hosts, ports and paths: it goes to the log only.
    outage = outage_of(exc)
    if outage is None:
        return await _unhandled(request, exc)
    log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
    return unavailable("database", str(outage))


async def _broker(request: Request, exc: Exception) -> JSONResponse:
    log.warning("broker unreachable on %s %s: %s", request.method, request.url.path, exc)
    return unavailable("broker", "the message broker is unreachable; retry shortly")


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the methods of the first route that matched the path; the
        # document knows them all.
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; use {', '.join(allowed)}"
    return problem(exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    path = request.url.path
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal error; the server log has the details")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ServiceError, _service)
    app.add_exception_handler(GanError, _lower_layer)
    app.add_exception_handler(StoreError, _lower_layer)
    app.add_exception_handler(DriverError, _database)
    for broker_error in (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        kombu.exceptions.OperationalError,
    ):
        app.add_exception_handler(broker_error, _broker)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unhandled)
