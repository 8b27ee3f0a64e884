"""What every request passes before a route runs: readable identifiers, auth, a body limit.

An ASGI middleware, so each check happens before any body byte is read (DESIGN §10):

1. No NUL byte in the path or the query (no text column can store one; 422 naming the part).
2. Auth from the headers alone: when API keys are configured, mutating routes (and the
   sampling routes when GANSERVE_PROTECT_SAMPLING is true) answer 401/403 at once, so an
   unauthenticated client cannot make the server read, buffer or parse a body.
3. A body limit (GANSERVE_MAX_BODY_BYTES) on every route but the uploads, which stream into
   a file under their own limit: a Content-Length over it is a 413 before reading; a body
   streamed without one is counted as it arrives and refused with 413 once over the limit,
   never buffered whole. A body within the limit parses in a few milliseconds, so parsing
   on the event loop delays no other request noticeably.

The route dependencies check keys too (deps.py); both use `check_key` here.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ganserve.service.errors import (
    ForbiddenError,
    InvalidInputError,
    PayloadTooLargeError,
    ServiceError,
    UnauthorizedError,
)
from ganserve.service.problems import problem
from ganserve.settings import Settings

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Sampling routes: open unless GANSERVE_PROTECT_SAMPLING (the POST among them too).
SAMPLING_PATH = re.compile(
    r"^/v1/models/[^/]+/(samples|samples\.png|interpolation\.png|translate)$"
)
# Routes that stream their body into a file under a limit of their own (uploads).
OWN_LIMIT_PATHS = frozenset({"/v1/datasets"})


def check_key(authorization: str | None, api_keys: Sequence[str]) -> None:
    """Raise UnauthorizedError / ForbiddenError unless `authorization` carries a valid key."""
    if not api_keys:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("this route needs an API key: send 'Authorization: Bearer <key>'")
    # constant-time comparison against every key, so timing does not reveal a prefix
    matches = [hmac.compare_digest(token.encode(), key.encode()) for key in api_keys]
    if not any(matches):
        raise ForbiddenError("the API key sent is not valid")


def needs_key(method: str, path: str, settings: Settings) -> bool:
    """Whether this request must carry a key (when keys are configured)."""
    if not settings.api_keys or not path.startswith("/v1/"):
        return False
    if SAMPLING_PATH.match(path):
        return settings.protect_sampling
    return method in MUTATING_METHODS


class BodyTooLargeError(HTTPException):
    """Raised from `receive` when a streamed body passes the limit: FastAPI lets an
    HTTPException through its body parsing, and the problem handlers answer 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes")


class RequestGuard:
    """ASGI middleware: NUL bytes, auth and the body limit, in that order (see the module)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            receive = self._check(scope, receive)
        except ServiceError as error:
            await _refuse(error, scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope, receive: Receive) -> Receive:
        path: str = scope["path"]
        method: str = scope["method"]
        if "\x00" in path:
            raise InvalidInputError("the path must not contain a NUL character", field="path")
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    field = name.replace("\x00", "") or "query"
                    raise InvalidInputError(
                        f"{field}: must not contain a NUL character (\\u0000)", field=field
                    )
        headers = dict(scope["headers"])
        if needs_key(method, path, self.settings):
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            check_key(authorization, self.settings.api_keys)
        if path in OWN_LIMIT_PATHS:
            return receive
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise PayloadTooLargeError(
                f"the request body is over the limit of {limit} bytes", field="body", limit=limit
            )
        return _counting(receive, limit)


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLargeError(limit)
        return message

    return counted


async def _refuse(error: ServiceError, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    if error.status == 413:
        headers["Connection"] = "close"  # the unread body is not drained
    response = problem(
        error.status, error.detail, title=error.title, field=error.field, headers=headers,
        **error.extra,
    )  # fmt: skip
    await response(scope, receive, send)
