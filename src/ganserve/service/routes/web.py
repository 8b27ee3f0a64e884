"""The web page (issue 8): `/` and its static files under `/ui/`, outside the OpenAPI document.

Plain files from `service/web/` (HTML, an ES module, a stylesheet): nothing is built, nothing
comes from elsewhere. The page talks to the API with relative URLs, so it also works behind a
reverse proxy that mounts the service under a path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from ganserve.service.errors import NotFoundError

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# The files served, by name, and their media types: nothing else under WEB_DIR is reachable.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

# The page loads only its own files and calls only this API; images are shown (and can be
# read back) as blob: URLs made from the API's responses.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)

IfNoneMatch = Annotated[str | None, Header()]


def asset_response(name: str, if_none_match: str | None = None) -> Response:
    """The file `name` with an ETag (304 when If-None-Match has it), revalidated on each use."""
    if name not in ASSETS:
        raise NotFoundError(f"no file {name!r} in the web page; files: {', '.join(ASSETS)}")
    body = (WEB_DIR / name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if name == "index.html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["Referrer-Policy"] = "same-origin"
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ASSETS[name], headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
def web_page(if_none_match: IfNoneMatch = None) -> Response:
    """The single page; its views are hash routes (#/models, #/jobs, #/submit, ...)."""
    return asset_response("index.html", if_none_match)


@router.api_route("/ui/{name}", methods=["GET", "HEAD"])
def web_asset(name: str, if_none_match: IfNoneMatch = None) -> Response:
    return asset_response(name, if_none_match)
