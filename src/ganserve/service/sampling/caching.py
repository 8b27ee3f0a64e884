"""HTTP caching of sampled images: the ETag, `If-None-Match` and `Cache-Control`.

An ETag names the weights (their sha256) and every parameter that shapes the bytes, so equal
ETags mean equal bytes on any replica (DESIGN §8). A version number's answer never changes
(immutable, a year); an alias's can, so it is revalidated (no-cache): the client sends its
ETag back and gets a 304 without anything being rendered. With API keys protecting sampling,
answers are private to the client's cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ganserve.service.sampling.generator_cache import ResolvedVersion
from ganserve.settings import Settings
from ganserve.store import registry as store_registry

RENDER_FORMAT = 1  # part of every ETag: bump when the same request would render differently
IMMUTABLE = "max-age=31536000, immutable"


@dataclass(frozen=True)
class Rendered:
    """An HTTP answer: 200 with a body, or 304 (empty body, media_type None)."""

    status: int
    body: bytes
    media_type: str | None
    headers: dict[str, str]


def not_modified(headers: dict[str, str]) -> Rendered:
    return Rendered(304, b"", None, headers)


def etag_for(resolved: ResolvedVersion, kind: str, params: dict[str, object]) -> str:
    """A strong ETag: the weights' identity and every parameter that shapes the bytes."""
    payload = {
        "render": RENDER_FORMAT,
        "kind": kind,
        "model": resolved.name,
        "version": resolved.version,
        "identity": resolved.identity,
        **params,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:40] + '"'


def etag_matches(if_none_match: str | None, etag: str | None) -> bool:
    """RFC 9110 If-None-Match: `*` or any listed tag equal to ours (weak comparison)."""
    if not if_none_match or etag is None:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def cache_control(version_ref: str, settings: Settings) -> str:
    """Immutable for a version number (its bytes never change); revalidate for an alias."""
    private = bool(settings.api_keys) and settings.protect_sampling
    if store_registry.is_pinned(version_ref):
        return ("private, " if private else "public, ") + IMMUTABLE
    return "private, no-cache" if private else "no-cache"


def image_headers(
    resolved: ResolvedVersion,
    version_ref: str,
    settings: Settings,
    kind: str,
    params: dict[str, object],
    **extra: object,
) -> dict[str, str]:
    """The headers of an image answer: model, version, `extra`, ETag and Cache-Control."""
    headers = model_headers(resolved, **extra)
    headers["ETag"] = etag_for(resolved, kind, params)
    headers["Cache-Control"] = cache_control(version_ref, settings)
    return headers


def model_headers(resolved: ResolvedVersion, **extra: object) -> dict[str, str]:
    headers = {"X-Model-Name": resolved.name, "X-Model-Version": str(resolved.version)}
    headers.update({key: str(value) for key, value in extra.items()})
    return headers
