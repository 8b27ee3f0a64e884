"""Jobs over HTTP: submit, validation, list, get, cancel, history, preview, API keys.

No worker runs here: submitted jobs stay queued. Running and finished states are driven
through the store, as a worker would.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
import torch
from fastapi.testclient import TestClient
from PIL import Image

from ganserve.gan.data import ImageDataset, packed_dataset_path, save_packed
from ganserve.gan.sample import encode_png
from ganserve.service.app import create_app
from ganserve.service.schemas import JobStatus
from ganserve.settings import Settings
from ganserve.store import Store
from ganserve.store import jobs as job_store
from ganserve.store import metrics as metric_store
from ganserve.store.events import read_events_sync, stream_key
from ganserve.store.tables import JOB_STATUSES

PROBLEM = "application/problem+json"
UNKNOWN_ID = "0" * 32


@pytest.fixture
def store(client: TestClient) -> Store:
    store: Store = client.app.state.context.store  # type: ignore[attr-defined]
    return store


@pytest.fixture
def broker(redis_url: str, store: Store) -> Iterator[redis.Redis]:
    """A Redis client; deletes the event streams of this test's jobs afterwards."""
    client = redis.Redis.from_url(redis_url)
    yield client
    with store.session() as session:
        ids = [job.id for job in job_store.list_jobs(session, limit=1000)[0]]
    if ids:
        client.delete(*(stream_key(job_id) for job_id in ids))
    client.close()


def submit(client: TestClient, **spec: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def start(store: Store, job_id: str) -> int:
    """Claim the job as a worker would; its attempt."""
    with store.session() as session:
        attempt = job_store.claim_job(session, job_id, "test-worker", lease_s=60)
    assert attempt is not None
    return attempt


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def write_upload(settings: Settings, name: str, size: int, count: int, classes: int) -> None:
    names = tuple(str(i) for i in range(classes)) if classes > 1 else ("all",)
    dataset = ImageDataset(
        name,
        torch.zeros((count, 1, size, size), dtype=torch.uint8),
        torch.arange(count, dtype=torch.int64) % len(names),
        names,
    )
    save_packed(dataset, packed_dataset_path(settings.data_dir, name))


# --- submit ---------------------------------------------------------------------------------


def test_submit_returns_202_with_location_and_the_queued_job(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"steps": 50, "seed": 7})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["name"] == "digits-mlp"
    assert job["progress"] == {
        "step": 0, "total_steps": 50, "fraction": 0.0, "steps_per_sec": None, "eta_s": None,
    }  # fmt: skip
    assert job["model"] is None and job["error"] is None and job["attempt"] == 0

    shown = client.get(response.headers["location"]).json()
    assert shown["status"] == "queued" and shown["progress"]["total_steps"] == 50
    spec = shown["spec"]
    assert spec["steps"] == 50 and spec["seed"] == 7 and spec["name"] == "digits-mlp"
    # every default is echoed, in the API's nested shape
    assert spec["noise"] == {"dim": 100, "distribution": "normal"}
    assert spec["betas"] == [0.5, 0.999]
    assert spec["batch_size"] == 128 and spec["lr_g"] == 2e-4 and spec["lr_d"] == 2e-4
    assert spec["dataset"] == "digits" and spec["architecture"] == "mlp" and spec["loss"] == "bce"
    assert spec["ema"] == 0.999 and spec["n_critic"] == 1 and spec["device"] == "auto"


def test_submit_sends_the_celery_task_to_the_training_queue(
    client: TestClient, settings: Settings, broker: redis.Redis
) -> None:
    job = submit(client, name="my-model", steps=10)
    assert broker.llen(settings.training_queue) == 1
    raw = broker.lindex(settings.training_queue, 0)
    assert raw is not None
    message = json.loads(raw)
    assert message["headers"]["task"] == "ganserve.train"
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert args == [job["id"]]
    assert message["properties"]["delivery_info"]["routing_key"] == settings.training_queue


def test_submit_keeps_the_job_queued_when_the_broker_refuses(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(job_id: str) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(client.app.state.context.queue, "enqueue", refuse)  # type: ignore[attr-defined]
    job = submit(client, steps=10)
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"


def test_submit_mirrors_the_spec_name_and_options(client: TestClient) -> None:
    body = {
        "name": "wgan.digits_1",
        "loss": "wgan-gp",
        "n_critic": 5,
        "conditional": True,
        "noise": {"dim": 64, "distribution": "uniform"},
        "betas": [0.0, 0.9],
        "lr_g": 1e-4,
        "batch_size": 64,
    }
    spec = submit(client, **body)["spec"]
    assert spec["name"] == "wgan.digits_1"
    assert {key: spec[key] for key in body} == body


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"architecture": "resnet"}, "architecture", "mlp, dcgan"),
        ({"loss": "mse"}, "loss", "bce, wgan-gp, hinge"),
        ({"noise": {"distribution": "gamma"}}, "noise.distribution", "normal, uniform"),
        ({"noise": {"dim": 0}}, "noise.dim", "between 1 and"),
        ({"steps": 0}, "steps", "between 1 and"),
        ({"batch_size": 1}, "batch_size", "between 2 and"),
        ({"batch_size": 2000}, "batch_size", "1797"),
        ({"betas": [1.5, 0.999]}, "betas.0", "0.9999"),
        ({"betas": [0.5, 2.0]}, "betas.1", "0.9999"),
        ({"lr_d": 0.0}, "lr_d", "(0.0, 1.0]"),
        ({"device": "tpu"}, "device", "auto, cpu, cuda, cuda:N"),
        ({"precision": "fp8"}, "precision", "fp32, bf16"),
        ({"precision": "bf16", "device": "cpu"}, "precision", "CUDA"),
        ({"dataset": "imagenet"}, "dataset", "digits, mnist, fashion-mnist, cifar10"),
        ({"dataset": "mnist"}, "dataset", "train-images-idx3-ubyte"),
        ({"dataset": "cifar10"}, "dataset", "data_batch_1.bin"),
        ({"name": "Bad Name"}, "name", "lowercase letters"),
        ({"steps": "many"}, "steps", "integer"),
        ({"steps": 10.5}, "steps", "integer"),
        ({"conditional": "yes"}, "conditional", "boolean"),
        ({"learning_rate": 0.1}, "learning_rate", "Extra inputs are not permitted"),
        ({"noise": {"size": 3}}, "noise.size", "Extra inputs are not permitted"),
        ({"on_alarm": "panic"}, "on_alarm", "warn, stop, rollback"),
        ({"eval_samples": 1}, "eval_samples", "between 2 and 50000"),
        ({"eval_every": -1}, "eval_every", "between 0 and"),
        ({"alarm_coverage": 1.5}, "alarm_coverage", "[0.0, 1.0]"),
        ({"alarm_fd_patience": 0}, "alarm_fd_patience", "between 1 and 100"),
        ({"alarm_after": 1.5}, "alarm_after", "[0.0, 1.0]"),
        ({"augment": "flip"}, "augment", "auto, none, translate"),
        ({"mode_seeking": -0.1}, "mode_seeking", "[0.0, 10.0]"),
        ({"class_loss": "lots"}, "class_loss", "number"),
    ],
)
def test_invalid_spec_fields_are_422_problems_naming_the_field(
    client: TestClient, settings: Settings, body: dict[str, Any], field: str, needle: str
) -> None:
    problem = assert_problem(client.post("/v1/jobs", json=body), 422, field)
    assert needle in problem["detail"], problem["detail"]
    assert client.get("/v1/jobs").json()["total"] == 0  # nothing was stored


def test_mnist_missing_files_name_the_files_and_the_folder(
    client: TestClient, settings: Settings
) -> None:
    problem = assert_problem(client.post("/v1/jobs", json={"dataset": "mnist"}), 422, "dataset")
    assert "train-labels-idx1-ubyte" in problem["detail"]
    assert "$GANSERVE_DATA_DIR/datasets/mnist" in problem["detail"]  # relative: no server path


def test_conditional_needs_a_labelled_dataset(client: TestClient, settings: Settings) -> None:
    write_upload(settings, "blobs", size=8, count=40, classes=1)
    body = {"dataset": "blobs", "conditional": True, "batch_size": 16}
    problem = assert_problem(client.post("/v1/jobs", json=body), 422, "conditional")
    assert "no class labels" in problem["detail"]
    submit(client, dataset="blobs", batch_size=16, steps=5)  # unconditional is fine


def test_dcgan_refuses_an_unsupported_image_size(client: TestClient, settings: Settings) -> None:
    write_upload(settings, "tens", size=10, count=40, classes=2)
    body = {"dataset": "tens", "architecture": "dcgan", "batch_size": 16}
    problem = assert_problem(client.post("/v1/jobs", json=body), 422, "architecture")
    assert "8, 14, 16, 28, 32, 56, 64" in problem["detail"]
    submit(client, dataset="tens", batch_size=16, steps=5)  # mlp takes any size
    write_upload(settings, "sixteens", size=16, count=40, classes=2)
    submit(client, dataset="sixteens", architecture="dcgan", batch_size=16, steps=5)


def test_batch_size_bigger_than_an_upload(client: TestClient, settings: Settings) -> None:
    write_upload(settings, "tiny", size=8, count=10, classes=2)
    problem = assert_problem(
        client.post("/v1/jobs", json={"dataset": "tiny", "batch_size": 11}), 422, "batch_size"
    )
    assert "10 images" in problem["detail"]


def test_a_body_that_is_not_json_is_a_422_problem(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=b"not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)
    # where the JSON breaks, in lines and columns (1-based), not a character offset
    broken = client.post(
        "/v1/jobs",
        content=b'{"steps": 10,\n "seed" 3}',
        headers={"content-type": "application/json"},
    )
    problem = assert_problem(broken, 422)
    assert problem["field"] == "body"
    assert problem["detail"].startswith("body: invalid JSON at line 2, column 9"), problem
    # a JSON body sent without its content type is not parsed: say that JSON is expected
    untyped = client.post("/v1/jobs", content=b'{"steps": 10}')
    problem = assert_problem(untyped, 422)
    assert "JSON expected" in problem["detail"] and "application/json" in problem["detail"]
    assert problem["field"] == "body"


# --- list and get ---------------------------------------------------------------------------


def test_list_filters_by_status_and_paginates(client: TestClient, store: Store) -> None:
    ids = [submit(client, steps=10, seed=i)["id"] for i in range(5)]
    start(store, ids[1])
    client.post(f"/v1/jobs/{ids[2]}/cancel")

    page = client.get("/v1/jobs").json()
    assert page["total"] == 5 and page["limit"] == 50 and page["offset"] == 0
    assert [job["id"] for job in page["items"]] == ids[::-1]  # newest first

    page = client.get("/v1/jobs", params={"limit": 2, "offset": 1}).json()
    assert [job["id"] for job in page["items"]] == [ids[3], ids[2]]
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1

    queued = client.get("/v1/jobs", params={"status": "queued"}).json()
    assert queued["total"] == 3 and {j["id"] for j in queued["items"]} == {ids[0], ids[3], ids[4]}
    running = client.get("/v1/jobs", params={"status": "running"}).json()
    assert [j["id"] for j in running["items"]] == [ids[1]]
    assert running["items"][0]["attempt"] == 1 and running["items"][0]["worker"] == "test-worker"
    cancelled = client.get("/v1/jobs", params={"status": "cancelled"}).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[2]]
    assert client.get("/v1/jobs", params={"offset": 10}).json()["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_list_rejects_bad_parameters(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    problem = assert_problem(client.get("/v1/jobs", params=params), 422, field)
    if field == "status":
        for status in JOB_STATUSES:
            assert status in problem["detail"]


def test_job_status_literal_matches_the_store() -> None:
    assert JobStatus.__args__ == JOB_STATUSES  # type: ignore[attr-defined]


def test_get_shows_progress_losses_metrics_warnings_and_the_model(
    client: TestClient, store: Store
) -> None:
    job_id = submit(client, steps=200)["id"]
    attempt = start(store, job_id)
    with store.session() as session:
        job_store.update_progress(
            session, job_id, attempt, 50, 12.5, 12.0, {"loss_d": 0.7, "loss_g": 1.2},
            metrics={"fd": 3.5},
        )  # fmt: skip
        job_store.add_warning(session, job_id, "D is winning")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "running" and job["started_at"] is not None
    assert job["progress"] == {
        "step": 50, "total_steps": 200, "fraction": 0.25, "steps_per_sec": 12.5, "eta_s": 12.0,
    }  # fmt: skip
    assert job["last_losses"] == {"loss_d": 0.7, "loss_g": 1.2}
    assert job["latest_metrics"] == {"fd": 3.5}
    assert job["warnings"] == ["D is winning"]

    with store.session() as session:
        job_store.finish_job(
            session, job_id, attempt, "succeeded", model_name="digits-mlp", model_version=1
        )
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["finished_at"] is not None
    assert job["model"] == {"name": "digits-mlp", "version": 1}


def test_a_failed_job_shows_its_error(client: TestClient, store: Store) -> None:
    job_id = submit(client, steps=10)["id"]
    attempt = start(store, job_id)
    with store.session() as session:
        job_store.finish_job(session, job_id, attempt, "failed", error="diverged at step 3")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"] == "diverged at step 3"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs/{id}"),
        ("POST", "/v1/jobs/{id}/cancel"),
        ("GET", "/v1/jobs/{id}/events"),
        ("GET", "/v1/jobs/{id}/history"),
        ("GET", "/v1/jobs/{id}/preview.png"),
    ],
)
@pytest.mark.parametrize("job_id", [UNKNOWN_ID, "not-a-job", "A" * 32, "%2e%2e"])
def test_unknown_jobs_are_404_on_every_route(
    client: TestClient, method: str, path: str, job_id: str
) -> None:
    response = client.request(method, path.replace("{id}", job_id))
    assert "not found" in assert_problem(response, 404)["detail"]


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_a_queued_job_ends_it_and_its_event_stream(
    client: TestClient, broker: redis.Redis
) -> None:
    job_id = submit(client, steps=10)["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "cancelled" and job["cancel_requested"] is True
    assert job["finished_at"] is not None
    events = read_events_sync(broker, job_id)
    assert [(e.type, e.data["status"]) for e in events] == [("status", "cancelled")]
    assert events[0].is_terminal
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert "cancelled" in assert_problem(again, 409)["detail"]


def test_cancel_a_running_job_requests_a_stop(
    client: TestClient, store: Store, broker: redis.Redis
) -> None:
    job_id = submit(client, steps=10)["id"]
    attempt = start(store, job_id)
    job = client.post(f"/v1/jobs/{job_id}/cancel").json()
    assert job["status"] == "running" and job["cancel_requested"] is True
    assert read_events_sync(broker, job_id) == []  # the worker reports the end
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202  # idempotent
    with store.session() as session:
        assert job_store.is_cancel_requested(session, job_id)
        job_store.finish_job(session, job_id, attempt, "cancelled")
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_cancel_a_finished_job_is_409_naming_its_status(
    client: TestClient, store: Store, status: str
) -> None:
    job_id = submit(client, steps=10)["id"]
    attempt = start(store, job_id)
    with store.session() as session:
        job_store.finish_job(session, job_id, attempt, status)
    problem = assert_problem(client.post(f"/v1/jobs/{job_id}/cancel"), 409)
    assert status in problem["detail"]


# --- history --------------------------------------------------------------------------------


def test_history_returns_each_series_by_step(client: TestClient, store: Store) -> None:
    job_id = submit(client, steps=100)["id"]
    assert client.get(f"/v1/jobs/{job_id}/history").json() == {
        "job_id": job_id, "step": 0, "total_steps": 100, "series": {},
    }  # fmt: skip
    with store.session() as session:
        metric_store.append_metrics(session, job_id, 20, {"loss_d": 0.5, "loss_g": 1.5})
        metric_store.append_metrics(session, job_id, 10, {"loss_d": 0.9, "loss_g": 1.1})
        metric_store.append_metrics(session, job_id, 20, {"fd": 4.0}, extra={"n": 500})
    history = client.get(f"/v1/jobs/{job_id}/history").json()
    assert history["series"] == {
        "loss_d": [[10, 0.9], [20, 0.5]],
        "loss_g": [[10, 1.1], [20, 1.5]],
        "fd": [[20, 4.0]],
    }
    only = client.get(
        f"/v1/jobs/{job_id}/history", params={"series": ["fd", "loss_d"], "after_step": 10}
    ).json()
    assert only["series"] == {"loss_d": [[20, 0.5]], "fd": [[20, 4.0]]}


# --- preview --------------------------------------------------------------------------------


def test_preview_is_404_until_written_then_png_with_etag_and_304(
    client: TestClient, store: Store
) -> None:
    job_id = submit(client, steps=10)["id"]
    problem = assert_problem(client.get(f"/v1/jobs/{job_id}/preview.png"), 404)
    assert "no preview yet" in problem["detail"]

    png = b"\x89PNG\r\n\x1a\nfirst"
    store.artifacts.write_bytes_atomic(store.artifacts.preview_path(job_id), png)
    response = client.get(f"/v1/jobs/{job_id}/preview.png")
    assert response.status_code == 200
    assert response.content == png and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-cache"
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')

    cached = client.get(f"/v1/jobs/{job_id}/preview.png", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag
    weak = client.get(
        f"/v1/jobs/{job_id}/preview.png", headers={"If-None-Match": f'"other", W/{etag}'}
    )
    assert weak.status_code == 304

    store.artifacts.write_bytes_atomic(store.artifacts.preview_path(job_id), png + b"2")
    changed = client.get(f"/v1/jobs/{job_id}/preview.png", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_preview_and_history_scale_up_by_whole_pixels(client: TestClient, store: Store) -> None:
    job_id = submit(client, steps=10)["id"]
    grid = torch.arange(2 * 3, dtype=torch.uint8).reshape(2, 3, 1) * 40  # (H, W, 1)
    store.artifacts.write_bytes_atomic(store.artifacts.preview_path(job_id), encode_png(grid))
    plain = client.get(f"/v1/jobs/{job_id}/preview.png")
    big = client.get(f"/v1/jobs/{job_id}/preview.png", params={"scale": 6})
    assert big.status_code == 200 and big.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(big.content))
    assert image.size == (3 * 6, 2 * 6)  # (W, H)
    pixels = np.asarray(image)
    assert (pixels[::6, ::6] == grid[:, :, 0].numpy()).all()  # nearest neighbour
    assert (pixels[5, 11], pixels[6, 12]) == (40, 200)  # each block is one source pixel
    etag = big.headers["etag"]
    assert etag != plain.headers["etag"]
    cached = client.get(
        f"/v1/jobs/{job_id}/preview.png", params={"scale": 6}, headers={"If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert_problem(client.get(f"/v1/jobs/{job_id}/preview.png", params={"scale": 0}), 422)
    over = assert_problem(client.get(f"/v1/jobs/{job_id}/preview.png", params={"scale": 99}), 413)
    assert over["field"] == "scale"

    one = Image.open(io.BytesIO(client.get(f"/v1/jobs/{job_id}/history.png").content))
    two = Image.open(
        io.BytesIO(client.get(f"/v1/jobs/{job_id}/history.png", params={"scale": 2}).content)
    )
    assert two.size == (2 * one.width, 2 * one.height)
    assert_problem(client.get(f"/v1/jobs/{job_id}/history.png", params={"scale": 5}), 422)


# --- API keys -------------------------------------------------------------------------------


@pytest.fixture
def keyed_client(settings: Settings) -> Iterator[TestClient]:
    keyed = settings.model_copy(update={"api_keys": ["k1"]})
    with TestClient(create_app(keyed)) as test_client:
        yield test_client


def test_mutating_job_routes_need_a_key_when_keys_are_set(keyed_client: TestClient) -> None:
    problem = assert_problem(keyed_client.post("/v1/jobs", json={"steps": 5}), 401)
    assert keyed_client.post("/v1/jobs", json={"steps": 5}).headers["www-authenticate"] == "Bearer"
    assert "Bearer" in problem["detail"]
    wrong = {"Authorization": "Bearer k2"}
    assert_problem(keyed_client.post("/v1/jobs", json={"steps": 5}, headers=wrong), 403)

    right = {"Authorization": "Bearer k1"}
    response = keyed_client.post("/v1/jobs", json={"steps": 5}, headers=right)
    assert response.status_code == 202
    job_id = response.json()["id"]

    # reads stay open
    assert keyed_client.get("/v1/jobs").status_code == 200
    assert keyed_client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert keyed_client.get(f"/v1/jobs/{job_id}/history").status_code == 200
    assert keyed_client.get("/v1/datasets").status_code == 200

    assert_problem(keyed_client.post(f"/v1/jobs/{job_id}/cancel"), 401)
    assert_problem(keyed_client.post(f"/v1/jobs/{job_id}/cancel", headers=wrong), 403)
    cancelled = keyed_client.post(f"/v1/jobs/{job_id}/cancel", headers=right)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"


def test_openapi_documents_every_job_dataset_and_ops_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    expected = {
        "/v1/jobs": {"get", "post"},
        "/v1/jobs/{job_id}": {"get"},
        "/v1/jobs/{job_id}/cancel": {"post"},
        "/v1/jobs/{job_id}/events": {"get"},
        "/v1/jobs/{job_id}/history": {"get"},
        "/v1/jobs/{job_id}/preview.png": {"get"},
        "/v1/datasets": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    spec = document["components"]["schemas"]["TrainSpec"]
    assert spec["properties"]["architecture"]["enum"] == ["mlp", "dcgan", "cyclegan"]
    assert spec["properties"]["steps"]["description"]
    assert spec.get("additionalProperties") is False
    assert (
        "image/png" in paths["/v1/jobs/{job_id}/preview.png"]["get"]["responses"]["200"]["content"]
    )
    assert (
        "text/event-stream"
        in paths["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    )


def test_jobs_get_the_configured_number_of_attempts(settings: Settings) -> None:
    from ganserve.service.app import create_app

    with TestClient(create_app(settings.model_copy(update={"max_job_attempts": 5}))) as client:
        job = client.post("/v1/jobs", json={"steps": 10}).json()
        assert client.get(f"/v1/jobs/{job['id']}").json()["max_attempts"] == 5
