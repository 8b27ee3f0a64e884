"""The model registry routes: list, show, delete versions, aliases, problem details."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ganserve.service.app import create_app
from ganserve.settings import Settings
from ganserve.store import registry as store_registry
from tests.service.trained_model import app_cache, app_store, register_model

PROBLEM = "application/problem+json"


def test_list_models_empty_then_registered(client: TestClient) -> None:
    assert client.get("/v1/models").json() == {"items": []}
    register_model(app_store(client), "digits")
    register_model(app_store(client), "digits", seed=1)
    register_model(app_store(client), "cdigits", conditional=True)
    items = client.get("/v1/models").json()["items"]
    assert [m["name"] for m in items] == ["cdigits", "digits"]
    digits = items[1]
    assert digits["latest_version"] == 2 and digits["versions"] == 2
    assert digits["aliases"] == {"latest": 2}
    assert digits["created_at"] <= digits["updated_at"]


def test_get_model_describes_each_version(client: TestClient) -> None:
    first = register_model(app_store(client), "cdigits", conditional=True)
    register_model(app_store(client), "cdigits", conditional=True)
    response = client.get("/v1/models/cdigits")
    assert response.status_code == 200
    model = response.json()
    assert model["name"] == "cdigits" and model["latest_version"] == 2
    assert model["aliases"] == {"latest": 2}
    assert [v["version"] for v in model["versions"]] == [1, 2]
    v1, v2 = model["versions"]
    assert v1 == {
        "name": "cdigits",
        "version": 1,
        "job_id": first.job_id,
        "step": 20,
        "created_at": v1["created_at"],
        "aliases": [],
        "kind": "noise",
        "domains": None,
        "architecture": "mlp",
        "image_shape": [1, 8, 8],
        "conditional": True,
        "classes": [str(i) for i in range(10)],
        "noise": {"dim": 100, "distribution": "normal", "sampling_contract": 2},
        "dataset": "digits",
        "sha256": first.description["sha256"],
        "metrics": {},
    }
    assert v2["aliases"] == ["latest"]
    assert client.get("/v1/models/cdigits/versions/1").json() == v1


def test_unconditional_version_has_no_classes(client: TestClient) -> None:
    register_model(app_store(client), "digits")
    version = client.get("/v1/models/digits/versions/1").json()
    assert version["conditional"] is False and version["classes"] == []


def test_unknown_model_is_a_404_naming_the_models(client: TestClient) -> None:
    response = client.get("/v1/models/faces")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert "no model is registered yet" in response.json()["detail"]
    register_model(app_store(client), "digits")
    for url in ("/v1/models/faces", "/v1/models/faces/versions/1"):
        problem = client.get(url).json()
        assert problem["status"] == 404 and problem["title"] == "Not found"
        assert problem["field"] == "name" and problem["models"] == ["digits"]
        assert "model 'faces' not found; registered models: digits" in problem["detail"]


def test_unknown_version_names_the_versions(client: TestClient) -> None:
    register_model(app_store(client), "digits")
    register_model(app_store(client), "digits")
    response = client.get("/v1/models/digits/versions/7")
    assert response.status_code == 404
    problem = response.json()
    assert problem["field"] == "version" and "versions: 1, 2" in problem["detail"]
    assert client.get("/v1/models/digits/versions/zero").status_code == 422
    assert client.get("/v1/models/digits/versions/0").status_code == 422


def test_delete_version_moves_latest_and_never_reuses_numbers(client: TestClient) -> None:
    store, cache = app_store(client), app_cache(client)
    for _ in range(3):
        register_model(store, "digits")
    assert client.get("/v1/models/digits/samples.png", params={"version": 3}).status_code == 200
    assert ("digits", 3) in cache
    with store.session() as session:
        folder = store.artifacts.absolute(
            store_registry.get_version(session, "digits", 3).artifact_path
        )

    response = client.delete("/v1/models/digits/versions/3")
    assert response.status_code == 204 and response.content == b""
    assert ("digits", 3) not in cache
    assert not (folder / "generator.json").exists()
    assert not (folder / "generator.safetensors").exists()
    assert folder.parent.is_dir()  # the job dir stays
    assert client.get("/v1/models/digits/versions/3").status_code == 404
    assert client.get("/v1/models/digits").json()["latest_version"] == 2
    sample = client.get("/v1/models/digits/samples.png")
    assert sample.headers["x-model-version"] == "2"
    assert client.delete("/v1/models/digits/versions/3").status_code == 404

    assert register_model(store, "digits").version == 4
    assert client.get("/v1/models/digits").json()["aliases"]["latest"] == 4


def test_deleting_the_last_version_removes_the_model(client: TestClient) -> None:
    register_model(app_store(client), "digits")
    assert client.delete("/v1/models/digits/versions/1").status_code == 204
    assert client.get("/v1/models").json() == {"items": []}
    assert client.get("/v1/models/digits").status_code == 404


def test_aliases_set_move_delete(client: TestClient) -> None:
    store = app_store(client)
    register_model(store, "digits")
    register_model(store, "digits")

    response = client.put("/v1/models/digits/aliases/stable", json={"version": 1})
    assert response.status_code == 200
    assert response.json() == {
        "name": "digits",
        "alias": "stable",
        "version": 1,
        "aliases": {"latest": 2, "stable": 1},
    }
    versions = client.get("/v1/models/digits").json()["versions"]
    assert [v["aliases"] for v in versions] == [["stable"], ["latest"]]

    moved = client.put("/v1/models/digits/aliases/stable", json={"version": 2})
    assert moved.json()["aliases"] == {"latest": 2, "stable": 2}
    assert client.get("/v1/models").json()["items"][0]["aliases"] == {"latest": 2, "stable": 2}

    assert client.delete("/v1/models/digits/aliases/stable").status_code == 204
    assert client.get("/v1/models/digits").json()["aliases"] == {"latest": 2}
    missing = client.delete("/v1/models/digits/aliases/stable")
    assert missing.status_code == 404 and missing.json()["field"] == "alias"


def test_latest_cannot_be_set_or_deleted(client: TestClient) -> None:
    register_model(app_store(client), "digits")
    for response in (
        client.put("/v1/models/digits/aliases/latest", json={"version": 1}),
        client.delete("/v1/models/digits/aliases/latest"),
    ):
        assert response.status_code == 422
        problem = response.json()
        assert problem["field"] == "alias" and "implicit" in problem["detail"]


def test_best_is_automatic_and_cannot_be_set_or_deleted(client: TestClient) -> None:
    register_model(app_store(client), "digits")
    for response in (
        client.put("/v1/models/digits/aliases/best", json={"version": 1}),
        client.delete("/v1/models/digits/aliases/best"),
    ):
        assert response.status_code == 422
        problem = response.json()
        assert problem["field"] == "alias" and "set automatically" in problem["detail"]
    assert client.get("/v1/models/digits").json()["aliases"] == {"latest": 1}


def test_alias_errors(client: TestClient) -> None:
    register_model(app_store(client), "digits")
    missing = client.put("/v1/models/digits/aliases/stable", json={"version": 9})
    assert missing.status_code == 404 and "versions: 1" in missing.json()["detail"]
    assert client.put("/v1/models/faces/aliases/stable", json={"version": 1}).status_code == 404
    bad_name = client.put("/v1/models/digits/aliases/Best!", json={"version": 1})
    assert bad_name.status_code == 422 and bad_name.json()["field"] == "alias"
    for body in ({"version": "1"}, {"version": 0}, {}, {"version": 1, "extra": 1}):
        assert client.put("/v1/models/digits/aliases/stable", json=body).status_code == 422


def test_deleting_a_version_drops_its_aliases(client: TestClient) -> None:
    register_model(app_store(client), "digits")
    register_model(app_store(client), "digits")
    client.put("/v1/models/digits/aliases/stable", json={"version": 1})
    client.delete("/v1/models/digits/versions/1")
    assert client.get("/v1/models/digits").json()["aliases"] == {"latest": 2}
    response = client.get("/v1/models/digits/samples.png", params={"version": "stable"})
    assert response.status_code == 404 and response.json()["field"] == "version"


def test_mutating_routes_need_a_key_when_keys_are_set(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_keys": ["s3cret"]})
    with TestClient(create_app(keyed)) as client:
        register_model(app_store(client), "digits")
        auth = {"Authorization": "Bearer s3cret"}
        put = "/v1/models/digits/aliases/stable"
        assert client.put(put, json={"version": 1}).status_code == 401
        assert client.delete("/v1/models/digits/versions/1").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.delete("/v1/models/digits/versions/1", headers=wrong).status_code == 403
        assert client.put(put, json={"version": 1}, headers=auth).status_code == 200
        assert client.delete("/v1/models/digits/aliases/stable", headers=auth).status_code == 204
        # reading and sampling stay open unless GANSERVE_PROTECT_SAMPLING is set
        assert client.get("/v1/models/digits").status_code == 200
        assert client.get("/v1/models/digits/samples.png").status_code == 200
        assert client.delete("/v1/models/digits/versions/1", headers=auth).status_code == 204


def test_routes_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/versions/{version}",
        "/v1/models/{name}/aliases/{alias}",
        "/v1/models/{name}/samples.png",
        "/v1/models/{name}/samples",
        "/v1/models/{name}/interpolation.png",
    ):
        assert path in paths
    assert (
        "image/png" in paths["/v1/models/{name}/samples.png"]["get"]["responses"]["200"]["content"]
    )
