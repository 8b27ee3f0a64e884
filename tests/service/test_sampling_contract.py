"""Sampling contracts over HTTP: each version renders under the contract it was exported with.

`digits` is a model trained now (contract 2); `old-digits` has the same weights, registered
as a model exported before contracts were numbered (contract 1).
"""

from __future__ import annotations

import io
from typing import Any

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ganserve.gan.sample import interpolation_png, make_noise, sample_png
from tests.service.trained_model import app_cache, app_store, pixels, register_model


@pytest.fixture
def models(client: TestClient) -> TestClient:
    store = app_store(client)
    register_model(store, "digits")
    register_model(store, "old-digits", legacy=True)
    register_model(store, "cdigits", conditional=True)
    return client


def sample(client: TestClient, name: str, **params: Any) -> bytes:
    response = client.get(f"/v1/models/{name}/samples.png", params=params)
    assert response.status_code == 200, response.text
    return response.content


def test_each_version_reports_its_contract(models: TestClient) -> None:
    new = models.get("/v1/models/digits/versions/1").json()
    old = models.get("/v1/models/old-digits/versions/1").json()
    assert new["noise"] == {"dim": 100, "distribution": "normal", "sampling_contract": 2}
    assert old["noise"] == {"dim": 100, "distribution": "normal", "sampling_contract": 1}
    assert new["sha256"] == old["sha256"]  # the same weights


def test_without_truncation_both_contracts_render_the_same_bytes(models: TestClient) -> None:
    params = {"seed": 3, "n": 9}
    assert sample(models, "digits", **params) == sample(models, "old-digits", **params)


def test_truncated_samples_of_a_contract_2_model_are_deterministic(models: TestClient) -> None:
    params = {"seed": 21, "n": 16, "truncation": 0.05}
    first = models.get("/v1/models/digits/samples.png", params=params)
    assert first.status_code == 200
    assert sample(models, "digits", **params) == first.content
    app_cache(models).clear()  # reloaded from its files: still the same bytes
    again = models.get("/v1/models/digits/samples.png", params=params)
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    generator = anyio.run(app_cache(models).get, "digits", "latest").generator
    assert generator.spec.sampling_contract == 2
    assert first.content == sample_png(generator, list(range(21, 37)), truncation=0.05)
    # each cell is its seed's image alone
    grid = pixels(first.content)
    alone = pixels(sample(models, "digits", seed=22, truncation=0.05))
    assert np.array_equal(grid[1:9, 10:18], alone)


def test_a_contract_1_model_renders_what_it_rendered_before(models: TestClient) -> None:
    params = {"seed": 21, "n": 4, "truncation": 0.5}
    old = anyio.run(app_cache(models).get, "old-digits", "latest").generator
    assert old.spec.sampling_contract == 1
    assert sample(models, "old-digits", **params) == sample_png(
        old, list(range(21, 25)), truncation=0.5
    )
    assert sample(models, "old-digits", **params) != sample(models, "digits", **params)
    strip = models.get(
        "/v1/models/old-digits/interpolation.png",
        params={"seed_a": 1, "seed_b": 2, "steps": 3, "truncation": 0.5},
    )
    assert strip.content == interpolation_png(old, 1, 2, 3, truncation=0.5)


def test_bulk_truncated_noise_of_a_contract_2_model_matches_its_pngs(models: TestClient) -> None:
    response = models.post(
        "/v1/models/cdigits/samples", json={"n": 6, "seed": 40, "truncation": 0.3, "format": "npz"}
    )
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as data:
        images, labels = data["images"], data["labels"]
    spec = anyio.run(app_cache(models).get, "cdigits", "latest").generator.spec
    _, untruncated = make_noise(list(range(40, 46)), spec)
    assert untruncated is not None
    assert labels.tolist() == untruncated.tolist()  # truncation keeps each seed's class
    for i in (0, 5):
        single = sample(models, "cdigits", seed=40 + i, truncation=0.3)
        assert np.array_equal(images[i][:, :, 0], pixels(single))
