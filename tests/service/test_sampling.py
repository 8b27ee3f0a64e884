"""Sampling routes: PNGs and grids, determinism, bounds, ETags, bulk zip/npz, interpolation."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from ganserve.gan.config import ModelSpec
from ganserve.gan.sample import interpolation_png, sample_images, sample_png
from ganserve.service.app import create_app
from ganserve.service.sampling.caching import etag_matches
from ganserve.service.sampling.limits import grid_size
from ganserve.settings import Settings
from ganserve.store import registry as store_registry
from tests.service.trained_model import app_cache, app_store, pixels, register_model

H = W = 8  # digits
PAD = 1  # grid padding of gan.sample.make_grid (GRID_PADDING)


@pytest.fixture
def digits(client: TestClient) -> TestClient:
    """The client, with an unconditional model `digits` and a conditional `cdigits`."""
    register_model(app_store(client), "digits")
    register_model(app_store(client), "cdigits", conditional=True)
    return client


def sample(client: TestClient, name: str = "digits", **params: Any) -> bytes:
    response = client.get(f"/v1/models/{name}/samples.png", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return response.content


def cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    top, left = PAD + row * (H + PAD), PAD + col * (W + PAD)
    return grid[top : top + H, left : left + W]


# ----------------------------------------------------------------------------- samples.png


def test_one_image_has_the_model_size_and_headers(digits: TestClient) -> None:
    response = digits.get("/v1/models/digits/samples.png", params={"seed": 7})
    assert response.status_code == 200
    assert response.headers["x-model-name"] == "digits"
    assert response.headers["x-model-version"] == "1"
    assert response.headers["x-seed"] == "7"
    image = pixels(response.content)
    assert image.shape == (H, W) and image.dtype == np.uint8
    assert image.std() > 0  # a picture, not a flat fill
    assert pixels(sample(digits, seed=7, scale=3)).shape == (3 * H, 3 * W)
    assert np.array_equal(pixels(sample(digits, seed=7, scale=3))[::3, ::3], image)


def test_grid_layout_and_cells_equal_single_images(digits: TestClient) -> None:
    grid = pixels(sample(digits, seed=100, n=10, nrow=4))
    assert grid.shape == (3 * (H + PAD) + PAD, 4 * (W + PAD) + PAD)  # 3 rows of 4
    for i in (0, 3, 4, 9):
        single = pixels(sample(digits, seed=100 + i))
        assert np.array_equal(cell(grid, i // 4, i % 4), single), i
    assert cell(grid, 2, 3).max() == 0  # cells 10, 11 are empty
    default = pixels(sample(digits, seed=100, n=10))  # nrow = ceil(sqrt(10)) = 4
    assert np.array_equal(default, grid)
    wide = pixels(sample(digits, n=3, nrow=8, scale=2))  # nrow above n: one row of n
    assert wide.shape == (2 * (H + 2 * PAD), 2 * (3 * (W + PAD) + PAD))


def test_same_seed_same_bytes_other_seed_other_bytes(digits: TestClient) -> None:
    assert sample(digits, seed=42) == sample(digits, seed=42)
    assert sample(digits, seed=42) != sample(digits, seed=43)
    assert sample(digits, seed=42, n=9) == sample(digits, seed=42, n=9)
    assert sample(digits, seed=42, truncation=0.5) == sample(digits, seed=42, truncation=0.5)
    assert sample(digits, seed=42, truncation=0.5) != sample(digits, seed=42)


def test_same_bytes_from_a_restarted_api(digits: TestClient, settings: Settings) -> None:
    params: dict[str, Any] = {"seed": 5, "n": 6, "nrow": 3, "scale": 2}
    first = sample(digits, **params)
    first_label = sample(digits, "cdigits", seed=5, label=2)
    with TestClient(create_app(settings)) as restarted:  # same data dir, fresh process state
        assert app_cache(restarted).loads == 0
        assert sample(restarted, **params) == first
        assert sample(restarted, "cdigits", seed=5, label=2) == first_label


def test_conditional_label_chooses_the_class(digits: TestClient) -> None:
    three = sample(digits, "cdigits", seed=1, label=3)
    assert sample(digits, "cdigits", seed=1, label=3) == three
    assert sample(digits, "cdigits", seed=1, label=5) != three
    drawn = sample(digits, "cdigits", seed=1)  # no label: the seed draws one
    assert drawn == sample(digits, "cdigits", seed=1)


def test_label_on_an_unconditional_model_is_refused(digits: TestClient) -> None:
    response = digits.get("/v1/models/digits/samples.png", params={"label": 1})
    assert response.status_code == 422
    problem = response.json()
    assert problem["field"] == "label" and "not conditional" in problem["detail"]


@pytest.mark.parametrize("label", [10, -1])
def test_label_out_of_range_names_the_classes(digits: TestClient, label: int) -> None:
    response = digits.get("/v1/models/cdigits/samples.png", params={"label": label})
    assert response.status_code == 422
    problem = response.json()
    assert problem["field"] == "label"
    assert "valid labels are 0..9" in problem["detail"]
    assert problem["classes"] == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"n": 0}, "n"),
        ({"nrow": 0, "n": 4}, "nrow"),
        ({"scale": 0}, "scale"),
        ({"truncation": 0}, "truncation"),
        ({"truncation": "nan"}, "truncation"),
        ({"version": ""}, "version"),
    ],
)
def test_invalid_parameters_are_422(digits: TestClient, params: dict[str, Any], field: str) -> None:
    response = digits.get("/v1/models/digits/samples.png", params=params)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_seeds_past_2_63_minus_1_wrap_to_0(digits: TestClient) -> None:
    """Image i uses seed + i modulo 2**63: a grid from the last seed goes on from 0 (the
    schema cannot say `seed + n <= 2**63`, so the server accepts every schema-valid pair)."""
    top = 2**63 - 1
    grid = pixels(sample(digits, seed=top, n=3, nrow=3))
    assert np.array_equal(cell(grid, 0, 0), pixels(sample(digits, seed=top)))
    assert np.array_equal(cell(grid, 0, 1), pixels(sample(digits, seed=0)))
    assert np.array_equal(cell(grid, 0, 2), pixels(sample(digits, seed=1)))
    bulk = digits.post("/v1/models/digits/samples", json={"n": 2, "seed": top, "format": "npz"})
    assert bulk.status_code == 200, bulk.text
    with np.load(io.BytesIO(bulk.content)) as data:
        assert data["seeds"].tolist() == [top, 0]


@pytest.fixture
def tight(settings: Settings) -> Iterator[TestClient]:
    """An API with small sampling limits, and the `digits` model."""
    limits = {
        "max_samples_per_request": 16,
        "max_bulk_samples": 20,
        "max_scale": 4,
        "max_output_pixels": 1400,  # a 4 x 4 grid (37 x 37) fits
    }
    with TestClient(create_app(settings.model_copy(update=limits))) as client:
        register_model(app_store(client), "digits")
        yield client


@pytest.mark.parametrize(
    ("params", "field", "limit"),
    [
        ({"n": 17}, "n", 16),
        ({"scale": 5}, "scale", 4),
        ({"n": 16, "scale": 2}, "scale", 1400),  # 74 x 74
        ({"n": 16, "nrow": 16}, "n", 1400),  # one row: 10 x 145
    ],
)
def test_limits_are_refused_before_loading(
    tight: TestClient, params: dict[str, Any], field: str, limit: int
) -> None:
    response = tight.get("/v1/models/digits/samples.png", params=params)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["field"] == field and problem["limit"] == limit
    assert str(limit) in problem["detail"]
    assert app_cache(tight).loads == 0
    assert tight.get("/v1/models/digits/samples.png", params={"n": 16}).status_code == 200


def test_bulk_and_interpolation_limits(tight: TestClient) -> None:
    too_many = tight.post("/v1/models/digits/samples", json={"n": 21})
    assert too_many.status_code == 413 and too_many.json()["limit"] == 20
    seeds = tight.post("/v1/models/digits/samples", json={"seeds": list(range(21))})
    assert seeds.status_code == 413 and seeds.json()["field"] == "seeds"
    assert tight.post("/v1/models/digits/samples", json={"n": 20}).status_code == 200  # 1280 px
    wide = tight.get(
        "/v1/models/digits/interpolation.png", params={"seed_a": 0, "seed_b": 1, "steps": 16}
    )
    assert wide.status_code == 413 and wide.json()["field"] == "steps"  # 10 x 145
    scaled = tight.get(
        "/v1/models/digits/interpolation.png", params={"seed_a": 0, "seed_b": 1, "scale": 5}
    )
    assert scaled.status_code == 413 and scaled.json()["field"] == "scale"
    assert app_cache(tight).loads == 1


def test_unknown_model_version_or_alias_is_a_404(digits: TestClient) -> None:
    missing = digits.get("/v1/models/faces/samples.png")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["models"] == ["cdigits", "digits"]
    for version in ("7", "best"):
        response = digits.get("/v1/models/digits/samples.png", params={"version": version})
        assert response.status_code == 404
        problem = response.json()
        assert problem["field"] == "version" and "versions: 1" in problem["detail"]
    bulk = digits.post("/v1/models/faces/samples", json={"n": 1})
    assert bulk.status_code == 404
    assert app_cache(digits).loads == 0


# ----------------------------------------------------------------------------- caching


def test_etag_and_not_modified_without_rendering(digits: TestClient) -> None:
    url, params = "/v1/models/digits/samples.png", {"seed": 3, "n": 4}
    first = digits.get(url, params=params)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')  # strong
    cache = app_cache(digits)
    before = (cache.loads, cache.hits)
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = digits.get(url, params=params, headers={"If-None-Match": header})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["x-model-version"] == "1"
    assert (cache.loads, cache.hits) == before  # the generator did not run
    changed = digits.get(url, params={**params, "scale": 2}, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert digits.get(url, params=params).headers["etag"] == etag
    other_seed = digits.get(url, params={"seed": 4, "n": 4}).headers["etag"]
    assert other_seed != etag


def test_etag_changes_with_the_version_behind_an_alias(digits: TestClient) -> None:
    store = app_store(digits)
    register_model(store, "digits", seed=1)
    url = "/v1/models/digits/samples.png"
    v1 = digits.get(url, params={"version": 1}).headers["etag"]
    v2 = digits.get(url, params={"version": 2}).headers["etag"]
    assert v1 != v2
    latest = digits.get(url, headers={"If-None-Match": v1})
    assert latest.status_code == 200 and latest.headers["etag"] == v2


def test_cache_control_pinned_version_vs_alias(digits: TestClient) -> None:
    url = "/v1/models/digits/samples.png"
    for version in ("1", "v1"):
        pinned = digits.get(url, params={"version": version})
        assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    digits.put("/v1/models/digits/aliases/stable", json={"version": 1})
    for version in ("latest", "stable"):
        response = digits.get(url, params={"version": version})
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-model-version"] == "1"
        assert response.headers["etag"] == digits.get(url, params={"version": 1}).headers["etag"]


def test_moved_alias_and_new_latest_are_served_at_once(digits: TestClient) -> None:
    store = app_store(digits)
    register_model(store, "digits", seed=1)  # version 2: other weights
    url = "/v1/models/digits/samples.png"
    v1, v2 = sample(digits, version=1), sample(digits, version=2)
    assert v1 != v2
    digits.put("/v1/models/digits/aliases/prod", json={"version": 1})
    assert sample(digits, version="prod") == v1
    digits.put("/v1/models/digits/aliases/prod", json={"version": 2})
    moved = digits.get(url, params={"version": "prod"})
    assert moved.headers["x-model-version"] == "2" and moved.content == v2
    assert sample(digits) == v2
    register_model(store, "digits")  # version 3: the same weights as version 1
    newest = digits.get(url)
    assert newest.headers["x-model-version"] == "3" and newest.content == v1
    assert app_cache(digits).loads == 3


def test_protected_sampling_needs_a_key_and_is_private(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_keys": ["k"], "protect_sampling": True})
    with TestClient(create_app(keyed)) as client:
        register_model(app_store(client), "digits")
        url = "/v1/models/digits/samples.png"
        assert client.get(url).status_code == 401
        assert client.post("/v1/models/digits/samples", json={"n": 1}).status_code == 401
        response = client.get(url, params={"version": 1}, headers={"Authorization": "Bearer k"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "private, max-age=31536000, immutable"


# ----------------------------------------------------------------------------- bulk


def read_zip(content: bytes) -> tuple[list[dict[str, str]], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    rows = list(csv.DictReader(io.StringIO(files.pop("labels.csv").decode())))
    return rows, files


def test_bulk_zip_matches_single_samples(digits: TestClient) -> None:
    response = digits.post("/v1/models/digits/samples", json={"n": 5, "seed": 10})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == (
        'attachment; filename="digits-v1-seed10-n5.zip"'
    )
    assert response.headers["x-model-version"] == "1" and response.headers["x-seed"] == "10"
    rows, files = read_zip(response.content)
    assert [r["file"] for r in rows] == [f"{i:06d}_seed{10 + i}.png" for i in range(5)]
    assert sorted(files) == [r["file"] for r in rows]
    assert [r["seed"] for r in rows] == [str(10 + i) for i in range(5)]
    assert all(r["label"] == "" and r["class_name"] == "" for r in rows)
    for row in rows:
        assert files[row["file"]] == sample(digits, seed=int(row["seed"]))
    again = digits.post("/v1/models/digits/samples", json={"n": 5, "seed": 10})
    assert again.content == response.content  # fixed timestamps: equal bytes


def test_bulk_zip_of_a_conditional_model_records_labels(digits: TestClient) -> None:
    seeds = [3, 1, 4, 1, 5]
    labels = [0, 1, 2, 8, 9]
    body = {"seeds": seeds, "labels": labels, "truncation": 0.8}
    rows, files = read_zip(digits.post("/v1/models/cdigits/samples", json=body).content)
    assert [(int(r["seed"]), int(r["label"]), r["class_name"]) for r in rows] == [
        (s, lab, str(lab)) for s, lab in zip(seeds, labels, strict=True)
    ]
    for row in rows:
        single = sample(digits, "cdigits", seed=row["seed"], label=row["label"], truncation=0.8)
        assert files[row["file"]] == single
    # no labels: each seed draws its class, the same one samples.png draws
    rows, files = read_zip(digits.post("/v1/models/cdigits/samples", json={"n": 4}).content)
    for row in rows:
        assert 0 <= int(row["label"]) <= 9 and row["class_name"] == row["label"]
        assert files[row["file"]] == sample(digits, "cdigits", seed=row["seed"])
        assert files[row["file"]] == sample(digits, "cdigits", seed=row["seed"], label=row["label"])
    # one label for all
    rows, _ = read_zip(
        digits.post("/v1/models/cdigits/samples", json={"n": 3, "labels": 7}).content
    )
    assert [r["label"] for r in rows] == ["7", "7", "7"]


def test_bulk_npz_arrays_equal_the_pngs(digits: TestClient) -> None:
    response = digits.post("/v1/models/digits/samples", json={"n": 300, "format": "npz"})
    assert response.status_code == 200
    assert response.headers["content-disposition"].endswith('filename="digits-v1-seed0-n300.npz"')
    with np.load(io.BytesIO(response.content), allow_pickle=False) as data:
        images, labels, seeds = data["images"], data["labels"], data["seeds"]
    assert images.shape == (300, H, W, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and (labels == -1).all()
    assert seeds.dtype == np.int64 and seeds.tolist() == list(range(300))
    for i in (0, 15, 16, 255, 256, 299):  # across forward-pass and chunk boundaries
        assert np.array_equal(images[i, :, :, 0], pixels(sample(digits, seed=i))), i
    again = digits.post("/v1/models/digits/samples", json={"n": 300, "format": "npz"})
    assert again.content == response.content


def test_bulk_npz_of_a_conditional_model(digits: TestClient) -> None:
    body = {"seeds": [9, 8], "labels": [4, 6], "format": "npz"}
    with np.load(io.BytesIO(digits.post("/v1/models/cdigits/samples", json=body).content)) as data:
        assert data["labels"].tolist() == [4, 6] and data["seeds"].tolist() == [9, 8]
        first = data["images"][0, :, :, 0]
    assert np.array_equal(first, pixels(sample(digits, "cdigits", seed=9, label=4)))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"n": 2, "seeds": [1, 2]}, "seeds"),
        ({"seed": 1, "seeds": [1, 2]}, "seeds"),
        ({}, "n"),
        ({"seed": 3}, "n"),
        ({"n": 0}, "n"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [-1]}, "seeds.0"),
        ({"n": 2, "labels": [1]}, "labels"),
        ({"n": 1, "labels": 1}, "labels"),  # digits is unconditional
        ({"n": 1, "format": "png"}, "format"),
        ({"n": 1, "truncation": -1}, "truncation"),
        ({"n": 1, "colour": "red"}, "colour"),
    ],
)
def test_bulk_invalid_bodies_are_422(digits: TestClient, body: dict[str, Any], field: str) -> None:
    response = digits.post("/v1/models/digits/samples", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_bulk_label_out_of_range(digits: TestClient) -> None:
    body = {"n": 2, "labels": [1, 10]}
    response = digits.post("/v1/models/cdigits/samples", json=body)
    assert response.status_code == 422 and response.json()["field"] == "labels"
    assert "0..9" in response.json()["detail"]


# ----------------------------------------------------------------------------- interpolation


def test_interpolation_strip_ends_are_the_two_seeds(digits: TestClient) -> None:
    url = "/v1/models/digits/interpolation.png"
    response = digits.get(url, params={"seed_a": 11, "seed_b": 22, "steps": 6})
    assert response.status_code == 200
    assert response.headers["x-seed-a"] == "11" and response.headers["x-seed-b"] == "22"
    strip = pixels(response.content)
    assert strip.shape == (H + 2 * PAD, 6 * (W + PAD) + PAD)
    assert np.array_equal(cell(strip, 0, 0), pixels(sample(digits, seed=11)))
    assert np.array_equal(cell(strip, 0, 5), pixels(sample(digits, seed=22)))
    assert not np.array_equal(cell(strip, 0, 2), cell(strip, 0, 0))
    scaled = digits.get(url, params={"seed_a": 11, "seed_b": 22, "steps": 6, "scale": 2})
    assert pixels(scaled.content).shape == (2 * (H + 2 * PAD), 2 * (6 * (W + PAD) + PAD))
    params = {"seed_a": 11, "seed_b": 22, "steps": 6, "scale": 2}
    assert digits.get(url, params=params).content == scaled.content
    cached = digits.get(url, params=params, headers={"If-None-Match": scaled.headers["etag"]})
    assert cached.status_code == 304


def test_interpolation_of_a_conditional_model_keeps_one_class(digits: TestClient) -> None:
    url = "/v1/models/cdigits/interpolation.png"
    params = {"seed_a": 1, "seed_b": 2, "steps": 4, "label": 6, "truncation": 0.9}
    strip = pixels(digits.get(url, params=params).content)
    start = sample(digits, "cdigits", seed=1, label=6, truncation=0.9)
    end = sample(digits, "cdigits", seed=2, label=6, truncation=0.9)
    assert np.array_equal(cell(strip, 0, 0), pixels(start))
    assert np.array_equal(cell(strip, 0, 3), pixels(end))
    unlabelled = pixels(digits.get(url, params={"seed_a": 1, "seed_b": 2}).content)
    assert np.array_equal(cell(unlabelled, 0, 0), pixels(sample(digits, "cdigits", seed=1)))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"seed_a": 1}, "seed_b"),
        ({"seed_a": 1, "seed_b": 2, "steps": 1}, "steps"),
        ({"seed_a": 1, "seed_b": 2, "steps": 65}, "steps"),
        ({"seed_a": 1, "seed_b": 2, "label": 3}, "label"),
    ],
)
def test_interpolation_invalid_parameters(
    digits: TestClient, params: dict[str, Any], field: str
) -> None:
    response = digits.get("/v1/models/digits/interpolation.png", params=params)
    assert response.status_code == 422 and response.json()["field"] == field


# ----------------------------------------------------------------------------- pure logic


def test_forward_is_independent_of_batch_and_position(digits: TestClient) -> None:
    cached = anyio.run(app_cache(digits).get, "digits", "latest")
    seeds = list(range(40))
    together, _ = next(sample_images(cached.generator, seeds, None, None))
    for i in (0, 17, 39):
        alone, _ = next(sample_images(cached.generator, [seeds[i]], None, None))
        assert torch.equal(alone[0], together[i])


def test_api_bytes_are_the_pipeline_bytes_the_cli_writes(digits: TestClient) -> None:
    """samples.png and interpolation.png answer exactly what gan.sample makes (the function
    `ganserve sample` calls) for the same seed, label, truncation, grid and scale."""
    generator = anyio.run(app_cache(digits).get, "cdigits", "latest").generator
    params = {"seed": 11, "n": 9, "nrow": 4, "label": 2, "truncation": 0.7, "scale": 2}
    expected = sample_png(
        generator, list(range(11, 20)), labels=[2] * 9, truncation=0.7, nrow=4, scale=2
    )
    assert sample(digits, "cdigits", **params) == expected
    assert sample(digits, "cdigits", seed=5) == sample_png(generator, [5])
    strip = digits.get(
        "/v1/models/cdigits/interpolation.png",
        params={"seed_a": 1, "seed_b": 9, "steps": 5, "truncation": 0.8, "scale": 2},
    )
    assert strip.status_code == 200
    assert strip.content == interpolation_png(generator, 1, 9, 5, truncation=0.8, scale=2)


def test_grid_size_matches_make_grid() -> None:
    spec = ModelSpec("mlp", 1, 8, 100, "normal")
    assert grid_size(spec, 1, 1) == (8, 8)
    assert grid_size(spec, 10, 4) == (28, 37)
    assert grid_size(spec, 3, 8) == (10, 28)


def test_etag_matching() -> None:
    tag = '"abc"'
    assert etag_matches('"abc"', tag) and etag_matches('W/"abc"', tag)
    assert etag_matches('"x", "abc"', tag) and etag_matches("*", tag)
    assert not etag_matches('"abcd"', tag) and not etag_matches(None, tag)


def test_registry_rows_without_a_spec_are_read_from_the_export(digits: TestClient) -> None:
    """A version registered with a bare description still samples (from generator.json)."""
    store = app_store(digits)
    with store.session() as session:
        row = store_registry.get_version(session, "digits", 1)
        store_registry.register_version(session, "bare", None, 1, row.artifact_path, {})
    assert sample(digits, "bare", seed=2) == sample(digits, seed=2)
