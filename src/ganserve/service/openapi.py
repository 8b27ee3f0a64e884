"""The OpenAPI document as the contract generated clients are built from (DESIGN §8).

FastAPI writes the paths, parameters and models; this module completes what it cannot know:

- every error status a route can answer, each as RFC 9457 problem details under
  `application/problem+json` (the `Problem` schema) - 400/413 for bodies, 401/403 where a key
  is needed, 404 where the path names something, 422 where there is input, 503 where a
  dependency is used - and no FastAPI `HTTPValidationError` (the server never sends it);
- binary responses as `type: string, format: binary` under their media types;
- the bearer scheme, and `security` on the routes that need a key (guard.needs_key decides,
  for the document as for the requests);
- short, stable operation ids (`submit_job`, `sample_png`, ...);
- the maxima this app's settings set (`SETTING_BOUNDS`: images, scale, bulk counts), so a
  request the document accepts is one the server accepts. Limits that depend on a model
  too (its classes, its image size against GANSERVE_MAX_OUTPUT_PIXELS, its noise against
  GANSERVE_MAX_SAMPLE_WORK_S) or on a dataset cannot be a schema keyword: the parameters'
  descriptions state them, and the server's 422/413 names the field.

The document is built once per app and cached, like FastAPI's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ganserve.service.guard import needs_key
from ganserve.service.problems import PROBLEM_JSON
from ganserve.settings import Settings

# Route function name -> operation id, where the function's name is not the best id.
OPERATION_IDS = {
    "samples_png": "sample_png",
    "bulk_samples": "sample_bulk",
    "interpolation_png": "sample_interpolation",
    "healthz": "get_health",
    "readyz": "get_readiness",
    "metrics": "get_metrics",
    "job_events": "follow_job_events",
    "job_history": "get_job_history",
    "job_history_png": "get_job_history_png",
    "job_preview": "get_job_preview",
}
# Routes that touch no database or broker, so never answer 503.
NO_DEPENDENCY = frozenset({"/healthz", "/metrics"})
BINARY = {"type": "string", "format": "binary"}
# One Server-Sent Event (tools such as Schemathesis check each event against it).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "description": "JSON."},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details: every error response of the API.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "description": "A URN naming the kind of problem."},
        "title": {"type": "string", "description": "Short, the same for every such problem."},
        "status": {"type": "integer", "description": "The HTTP status code."},
        "detail": {"type": "string", "description": "What went wrong here, in words."},
        "field": {"type": "string", "description": "The input field at fault, if one is."},
        "errors": {
            "type": "array",
            "description": "422: every invalid field.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
        "limit": {"type": "number", "description": "413: the limit that was passed."},
        "dependency": {
            "type": "string",
            "description": "503: the dependency that cannot be reached (database, broker).",
        },
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}

ERRORS = {
    400: "The body is not well-formed (malformed JSON).",
    401: "API keys are configured and none was sent (header WWW-Authenticate: Bearer).",
    403: "The API key sent is not valid.",
    404: "Nothing exists at this path.",
    409: "The resource is not in a state that allows this.",
    413: "The body or the result is over a documented limit (`limit`).",
    422: "A parameter or body field is invalid: `field` names it, `detail` says why.",
    503: "A dependency (`dependency`: database or broker) is unreachable; retry after "
    "the Retry-After header's seconds.",
}


# Where the settings bound a parameter or body field (the server answers 413 above it):
# (operation id, parameter) or (component schema, property) -> (keyword, setting).
SETTING_BOUNDS: dict[tuple[str, str], tuple[str, str]] = {
    ("sample_png", "n"): ("maximum", "max_samples_per_request"),
    ("sample_png", "scale"): ("maximum", "max_scale"),
    ("sample_interpolation", "scale"): ("maximum", "max_scale"),
    ("get_job_preview", "scale"): ("maximum", "max_scale"),
    ("BulkSamplesIn", "n"): ("maximum", "max_bulk_samples"),
    ("BulkSamplesIn", "seeds"): ("maxItems", "max_bulk_samples"),
}


def operation_id(route: APIRoute) -> str:
    """The app's generate_unique_id_function: the route function's name, or its better id."""
    return OPERATION_IDS.get(route.name, route.name)


def install_contract(app: FastAPI, settings: Settings) -> None:
    """Make `app.openapi()` return the completed document (see the module docstring)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build(), app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(spec: dict[str, Any], app: FastAPI, settings: Settings) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "One of GANSERVE_API_KEYS, on mutating routes when keys are set.",
        }
    }
    keyed = settings.model_copy(update={"api_keys": ["any"]})
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            secured = needs_key(method.upper(), path, keyed)
            if secured:
                # Without configured keys the route is open: the empty requirement says so.
                operation["security"] = [{"bearer": []}] if settings.api_keys else [
                    {"bearer": []}, {}
                ]  # fmt: skip
            _complete_responses(path, operation, secured)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    _no_tuples(spec)
    _exact_integer_bounds(spec)
    _setting_bounds(spec, settings)
    return spec


def _exact_integer_bounds(node: Any) -> None:
    """Integer bounds as integers. FastAPI's OpenAPI model stores every bound as a float, and
    the seeds' 2**63 - 1 becomes 2**63, a value the server refuses. The only bound of this API
    past a float's 53 bits is that one, so 2**63 (as float) is read back as 2**63 - 1."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    exact = int(value)
                    if exact == 2**63:
                        exact = 2**63 - 1
                    assert abs(exact) <= 2**53 or exact == 2**63 - 1, f"inexact bound {value}"
                    node[key] = exact
        for value in node.values():
            _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)


def _setting_bounds(spec: dict[str, Any], settings: Settings) -> None:
    """Write SETTING_BOUNDS's maxima with this app's values (a nullable field: its non-null
    member). Every entry must find its place: a renamed parameter fails here, not silently."""
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                nodes[operation["operationId"], parameter["name"]] = parameter["schema"]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        for field, node in schema.get("properties", {}).items():
            nodes[name, field] = node
    kinds = {"maximum": ("integer", "number"), "maxItems": ("array",)}
    for place, (keyword, setting) in SETTING_BOUNDS.items():
        node = nodes[place]
        members = [m for m in node.get("anyOf", [node]) if m.get("type") in kinds[keyword]]
        assert members, f"{place}: no {kinds[keyword]} schema to bound"
        for member in members:
            member[keyword] = getattr(settings, setting)


def _no_tuples(node: Any) -> None:
    """Tuples (`prefixItems`, e.g. [step, value]) as arrays of the union of their members:
    valid everywhere, where many validators and generators still reject `prefixItems`."""
    if isinstance(node, dict):
        members = node.pop("prefixItems", None)
        if members is not None:
            distinct = [m for i, m in enumerate(members) if m not in members[:i]]
            node["items"] = distinct[0] if len(distinct) == 1 else {"anyOf": distinct}
        for value in node.values():
            _no_tuples(value)
    elif isinstance(node, list):
        for value in node:
            _no_tuples(value)


def _complete_responses(path: str, operation: dict[str, Any], secured: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    body = operation.get("requestBody", {}).get("content", {})
    statuses: set[int] = set()
    if "application/json" in body:
        statuses.add(400)
    if body:
        statuses.add(413)
    if secured:
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    if body or operation.get("parameters") or "{" in path:
        statuses.add(422)
    if path not in NO_DEPENDENCY:
        statuses.add(503)
    statuses |= {int(code) for code in responses if code[0] in "45"}
    for status in sorted(statuses):
        entry = responses.setdefault(str(status), {})
        entry.setdefault("description", ERRORS.get(status, "An error (problem details)."))
        entry["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for code, entry in responses.items():
        if code[0] in "23":
            _binary_content(entry)


def _binary_content(entry: dict[str, Any]) -> None:
    for media_type, content in entry.get("content", {}).items():
        if "json" in media_type:
            continue
        if media_type == "text/event-stream":
            content["schema"] = dict(SSE_EVENT)
        elif media_type.startswith("text/"):
            content["schema"] = {"type": "string"}
        else:
            content["schema"] = dict(BINARY)
