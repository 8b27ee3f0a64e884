"""POST /v1/models/{name}/translate on a real app (SQLite, Redis): bytes, caching, refusals."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from ganserve.gan.translation.models import ResnetGenerator, TranslatorSpec
from ganserve.gan.translation.translate import export_translator
from ganserve.service.app import create_app
from ganserve.service.routes import translate as translate_routes
from ganserve.settings import Settings
from ganserve.store import Store, jobs, registry
from tests.service.trained_model import app_store, register_model

SPEC = TranslatorSpec(channels=3, image_size=16, width=4, blocks=1, d_width=4, d_layers=1)


def register_translator(store: Store, name: str, seed: int = 0) -> int:
    with store.session() as session:
        job = jobs.create_job(session, name, {"name": name}, total_steps=1)
        folder = store.artifacts.job_dir(job.id) / "generator"
        torch.manual_seed(seed)
        description = export_translator(
            ResnetGenerator(SPEC), ResnetGenerator(SPEC), folder, {"step": 1, "dataset": "digits"}
        )
        row = registry.register_version(
            session, name, job.id, 1, store.artifacts.relative(folder), description, metrics={}
        )
        return row.version


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    if not any(getattr(r, "path", "").endswith("/translate") for r in app.routes):
        app.include_router(translate_routes.router)  # until app.py mounts it
    with TestClient(app) as test_client:
        yield test_client


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 77).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(client: TestClient, name: str, body: bytes, kind: str = "image/png", **params: object):
    return client.post(
        f"/v1/models/{name}/translate", params=params, content=body,
        headers={"Content-Type": kind},
    )  # fmt: skip


def test_translates_both_ways_with_versions_and_etags(client: TestClient) -> None:
    store = app_store(client)
    register_translator(store, "zebra")
    first = _post(client, "zebra", _png((23, 17), "L"), direction="a2b", keep_size="true")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png"
    assert first.headers["x-model-version"] == "1" and first.headers["x-direction"] == "a2b"
    assert Image.open(io.BytesIO(first.content)).size == (23, 17)
    assert first.headers["cache-control"] == "no-cache"
    again = _post(client, "zebra", _png((23, 17), "L"), direction="a2b", keep_size="true")
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    back = _post(client, "zebra", _png((23, 17), "L"), direction="b2a", version="1")
    assert back.status_code == 200 and back.content != first.content
    assert Image.open(io.BytesIO(back.content)).size == (16, 16)
    assert "immutable" in back.headers["cache-control"]
    cached = client.post(
        "/v1/models/zebra/translate", params={"direction": "b2a", "version": "1"},
        content=_png((23, 17), "L"),
        headers={"Content-Type": "image/png", "If-None-Match": back.headers["etag"]},
    )  # fmt: skip
    assert cached.status_code == 304 and cached.content == b""
    register_translator(store, "zebra", seed=5)
    newer = _post(client, "zebra", _png((23, 17), "L"), direction="a2b", keep_size="true")
    assert newer.headers["x-model-version"] == "2" and newer.content != first.content
    pinned = _post(client, "zebra", _png((23, 17), "L"), direction="a2b", keep_size="true",
                   version="1")  # fmt: skip
    assert pinned.content == first.content


def test_zip_in_zip_out(client: TestClient) -> None:
    register_translator(app_store(client), "horse")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", _png((16, 16)))
        archive.writestr("b/c.png", _png((30, 10)))
    response = _post(client, "horse", buffer.getvalue(), "application/zip", direction="b2a")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["a.png", "b/c.png"]


def test_refusals_name_the_field_and_leave_nothing_behind(
    client: TestClient, settings: Settings
) -> None:
    store = app_store(client)
    register_translator(store, "zebra")
    register_model(store, "noise")
    before = sorted(p for p in Path(settings.data_dir).rglob("*"))
    cases = [
        (_post(client, "zebra", b"hello", "text/plain"), 422, "content-type"),
        (_post(client, "zebra", b"hello"), 422, "image"),
        (_post(client, "zebra", _png((8, 8)), direction="up"), 422, "direction"),
        (_post(client, "zebra", _png((5000, 5000), "L")), 413, "image"),
        (_post(client, "zebra", _png((2000, 2000), "L"), keep_size="true"), 413, "image"),
        (_post(client, "noise", _png((8, 8))), 422, "name"),
        (_post(client, "nobody", _png((8, 8))), 404, None),
        (_post(client, "zebra", _png((8, 8)), version="9"), 404, "version"),
    ]
    for response, status, field in cases:
        assert response.status_code == status, response.text
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        if field is not None:
            assert problem.get("field") == field, problem
    huge = _post(client, "zebra", bytes(settings.max_body_bytes + 1))
    assert huge.status_code == 413 and huge.json()["field"] == "body"
    after = sorted(p for p in Path(settings.data_dir).rglob("*"))
    assert after == before


def test_registry_describes_and_deletes_a_translator(
    client: TestClient, settings: Settings
) -> None:
    register_translator(app_store(client), "zebra")
    version = client.get("/v1/models/zebra/versions/1").json()
    assert version["kind"] == "translation" and version["architecture"] == "cyclegan"
    assert version["image_shape"] == [3, 16, 16] and version["noise"] is None
    listed = client.get("/v1/models/zebra").json()["versions"][0]
    assert listed["kind"] == "translation"
    assert client.delete("/v1/models/zebra/versions/1").status_code == 204
    assert not list(Path(settings.data_dir).rglob("translator.*"))
    gone = _post(client, "zebra", _png((8, 8)))
    assert gone.status_code == 404


def test_noise_routes_answer_422_for_a_translator(client: TestClient) -> None:
    register_translator(app_store(client), "zebra")
    for response in (
        client.get("/v1/models/zebra/samples.png", params={"truncation": 1.0}),
        client.get("/v1/models/zebra/interpolation.png", params={"seed_a": 1, "seed_b": 2}),
        client.post("/v1/models/zebra/samples", json={"n": 2}),
    ):
        assert response.status_code == 422, response.text
        assert "translate" in response.json()["detail"]


def test_samples_png_of_a_translator_is_the_translation_grid(client: TestClient) -> None:
    register_translator(app_store(client), "zebra")
    grid = client.get("/v1/models/zebra/samples.png", params={"seed": 3, "n": 4})
    assert grid.status_code == 200, grid.text
    # the built-in pair at 32 px: 6 rows (A, G(A), F(G(A)), B, F(B), G(F(B))) of 4
    assert Image.open(io.BytesIO(grid.content)).size == (4 * 33 + 1, 6 * 33 + 1)
    again = client.get("/v1/models/zebra/samples.png", params={"seed": 3, "n": 4})
    assert again.content == grid.content and again.headers["etag"] == grid.headers["etag"]
    other = client.get("/v1/models/zebra/samples.png", params={"seed": 4, "n": 4})
    assert other.content != grid.content
    cached = client.get(
        "/v1/models/zebra/samples.png", params={"seed": 3, "n": 4},
        headers={"If-None-Match": grid.headers["etag"]},
    )  # fmt: skip
    assert cached.status_code == 304


def test_cyclegan_jobs_are_validated_against_both_datasets(client: TestClient) -> None:
    accepted = client.post("/v1/jobs", json={"name": "pair", "architecture": "cyclegan"})
    assert accepted.status_code == 202, accepted.text
    spec = client.get(f"/v1/jobs/{accepted.json()['id']}").json()["spec"]
    assert spec["architecture"] == "cyclegan" and spec["cycle_loss"] == "lsgan"
    alone = client.post(
        "/v1/jobs", json={"architecture": "cyclegan", "dataset": "digits-on-colour"}
    )
    assert alone.status_code == 422 and alone.json()["field"] == "dataset_b"
    missing = client.post("/v1/jobs", json={"architecture": "cyclegan", "dataset_b": "mnist"})
    assert missing.status_code == 422 and missing.json()["field"] == "dataset_b"
    big = client.post("/v1/jobs", json={"architecture": "cyclegan", "batch_size": 4000})
    assert big.status_code == 422 and big.json()["field"] == "batch_size"
