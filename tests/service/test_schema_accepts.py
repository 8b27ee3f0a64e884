"""What the OpenAPI document accepts, the server accepts (and the limits it enforces are in it).

Each case here was a schema-valid request the server refused before the document said so
(found by Schemathesis' positive-data-acceptance check, tests/service/test_schemathesis.py).
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.service.jobs.spec import TrainSpec
from ganserve.settings import Settings
from ganserve.store.errors import InvalidValueError
from ganserve.store.names import (
    ALIAS_PATTERN,
    VERSION_REF_EXACT_PATTERN,
    positive_integer_pattern,
    validate_version_ref,
)
from tests.service.trained_model import app_store, register_model

LIMITS = {"max_samples_per_request": 7, "max_bulk_samples": 9, "max_scale": 3}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", **LIMITS))
    document: dict[str, Any] = app.openapi()
    return document


def parameter(spec: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    found = [p for p in spec["paths"][path][method]["parameters"] if p["name"] == name]
    schema: dict[str, Any] = found[0]["schema"]
    return schema


def non_null(node: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in node.get("anyOf", [node]) if m.get("type") != "null")


def test_the_settings_maxima_are_in_the_document(spec: dict[str, Any]) -> None:
    png, strip = "/v1/models/{name}/samples.png", "/v1/models/{name}/interpolation.png"
    assert parameter(spec, png, "get", "n")["maximum"] == 7
    assert parameter(spec, png, "get", "scale")["maximum"] == 3
    assert parameter(spec, strip, "get", "scale")["maximum"] == 3
    assert parameter(spec, "/v1/jobs/{job_id}/preview.png", "get", "scale")["maximum"] == 3
    bulk = spec["components"]["schemas"]["BulkSamplesIn"]["properties"]
    assert non_null(bulk["n"])["maximum"] == 9 and non_null(bulk["seeds"])["maxItems"] == 9


def test_integer_bounds_are_exact(spec: dict[str, Any]) -> None:
    """FastAPI writes bounds as floats: 2**63 - 1 became 2**63, a seed the server refuses."""
    bulk = spec["components"]["schemas"]["BulkSamplesIn"]["properties"]
    assert non_null(bulk["seeds"])["items"]["maximum"] == 2**63 - 1
    assert spec["components"]["schemas"]["TrainSpec"]["properties"]["seed"]["maximum"] == 2**63 - 1


def test_identifiers_have_the_servers_patterns(spec: dict[str, Any]) -> None:
    alias = parameter(spec, "/v1/models/{name}/aliases/{alias}", "put", "alias")
    assert alias["pattern"] == ALIAS_PATTERN and alias["not"] == {"enum": ["best", "latest"]}
    version = parameter(spec, "/v1/models/{name}/samples.png", "get", "version")
    assert version["pattern"] == VERSION_REF_EXACT_PATTERN
    assert parameter(spec, "/v1/jobs/{job_id}", "get", "job_id")["pattern"] == "^[0-9a-f]{32}$"
    key = parameter(spec, "/v1/jobs", "post", "Idempotency-Key")
    assert key["pattern"] == r"^[\x21-\x7e]{1,255}$"


@pytest.mark.parametrize("maximum", [1, 9, 10, 17, 205, 1000, 2**31 - 1])
def test_positive_integer_pattern_is_exactly_1_to_maximum(maximum: int) -> None:
    pattern = re.compile(f"^({positive_integer_pattern(maximum)})$")
    numbers = [*range(0, 300), maximum - 1, maximum, maximum + 1, 10 * maximum]
    for number in numbers:
        assert bool(pattern.fullmatch(str(number))) == (1 <= number <= maximum), number
    assert not pattern.fullmatch("01")


@pytest.mark.parametrize("ref", ["1", "2147483647", "2147483648", "9999999999", "0", "latest"])
def test_the_version_pattern_is_the_servers_rule(ref: str) -> None:
    try:
        validate_version_ref(ref)
        valid = True
    except InvalidValueError:
        valid = False
    assert bool(re.fullmatch(VERSION_REF_EXACT_PATTERN, ref)) == valid


def test_integral_floats_are_integers_and_other_numbers_are_not() -> None:
    spec = TrainSpec.model_validate_json('{"batch_size": 66.0, "noise": {"dim": 10.0}}')
    config = spec.to_config()
    assert (config.batch_size, config.noise_dim) == (66, 10)
    assert isinstance(config.batch_size, int)
    for body in ('{"batch_size": 66.5}', '{"batch_size": "66"}', '{"batch_size": true}'):
        with pytest.raises(ValueError):
            TrainSpec.model_validate_json(body)


def test_the_specs_cross_field_rules_are_in_the_document(spec: dict[str, Any]) -> None:
    rules = spec["components"]["schemas"]["TrainSpec"]["allOf"]
    bf16 = next(r for r in rules if "precision" in r["if"]["properties"])
    assert bf16["then"] == {"properties": {"device": {"not": {"const": "cpu"}}}}
    device = spec["components"]["schemas"]["TrainSpec"]["properties"]["device"]
    assert device["pattern"] == "^(auto|cpu|cuda|cuda:[0-9]+)$"


@pytest.fixture
def digits(client: TestClient) -> TestClient:
    register_model(app_store(client), "digits")
    return client


def test_bulk_takes_integral_floats_and_seeds_or_n(digits: TestClient) -> None:
    body = {"n": 2.0, "seed": 5.0, "format": "npz"}
    response = digits.post("/v1/models/digits/samples", json=body)
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as data:
        assert data["seeds"].tolist() == [5, 6]
    both = digits.post("/v1/models/digits/samples", json={"n": 2, "seeds": [1, 2]})
    assert both.status_code == 422 and both.json()["field"] == "seeds"
    rules = digits.get("/openapi.json").json()["components"]["schemas"]["BulkSamplesIn"]
    assert rules["if"]["required"] == ["seeds"] and rules["else"]["required"] == ["n"]
    assert rules["then"]["properties"] == {"n": {"type": "null"}, "seed": {"type": "null"}}
