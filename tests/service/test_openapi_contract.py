"""The OpenAPI document tells the truth: errors, binary bodies, security, operation ids."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.settings import Settings

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings(redis_url="redis://127.0.0.1:1/0")).openapi()
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def test_operation_ids_are_short_stable_and_unique(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+){0,3}", i) for i in ids), ids
    assert {"submit_job", "sample_png", "list_jobs", "get_job", "cancel_job"} <= set(ids)
    assert all(op.get("tags") for _, _, op in operations(spec))


def test_every_error_is_problem_details(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for method, path, op in operations(spec):
        for code, response in op["responses"].items():
            if code[0] in "45":
                assert response["content"] == {
                    "application/problem+json": {"schema": PROBLEM_REF}
                }, f"{method} {path} {code}"


def test_errors_each_route_can_answer_are_listed(spec: dict[str, Any]) -> None:
    submit = spec["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"400", "401", "403", "409", "413", "422", "503"} <= set(submit)
    upload = spec["paths"]["/v1/datasets"]["post"]["responses"]
    assert {"401", "403", "413", "422", "503"} <= set(upload)
    assert "422" in spec["paths"]["/v1/jobs"]["get"]["responses"]
    assert "404" in spec["paths"]["/v1/models/{name}"]["get"]["responses"]


def test_binary_responses_are_binary_strings(spec: dict[str, Any]) -> None:
    png = spec["paths"]["/v1/models/{name}/samples.png"]["get"]["responses"]["200"]["content"]
    assert png == {"image/png": {"schema": {"type": "string", "format": "binary"}}}
    bulk = spec["paths"]["/v1/models/{name}/samples"]["post"]["responses"]["200"]["content"]
    assert all(c["schema"] == {"type": "string", "format": "binary"} for c in bulk.values())


def test_bearer_security_on_the_routes_that_need_a_key(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    secured = {(m, p) for m, p, op in operations(spec) if op.get("security")}
    assert ("POST", "/v1/jobs") in secured and ("DELETE", "/v1/datasets/{name}") in secured
    assert ("GET", "/v1/jobs") not in secured
    assert ("POST", "/v1/models/{name}/samples") not in secured  # open unless configured


def test_docs_and_redoc_use_assets_served_by_the_api(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        scripts = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert scripts and all(s.startswith("/") for s in scripts), scripts
        for asset in scripts:
            assert client.get(asset).status_code == 200, asset


def test_no_tuple_items(spec: dict[str, Any]) -> None:
    assert "prefixItems" not in str(spec)
    series = spec["components"]["schemas"]["JobHistory"]["properties"]["series"]
    pair = series["additionalProperties"]["items"]
    assert pair["items"] == {"anyOf": [{"type": "integer"}, {"type": "number"}]}
    assert pair["minItems"] == pair["maxItems"] == 2
