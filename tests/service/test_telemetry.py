"""GET /metrics: Prometheus text whose counters move with the work done."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ganserve.service.app import create_app
from ganserve.settings import Settings
from ganserve.store import jobs
from tests.service.trained_model import register_model


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.text):  # parses or raises
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(values: dict, name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_requests_images_and_jobs(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        store = client.app.state.context.store  # type: ignore[attr-defined]
        register_model(store, "digits")
        before = _samples(client)

        assert client.get("/v1/models/digits/samples.png", params={"n": 9}).status_code == 200
        assert client.get("/v1/models/digits/samples.png", params={"n": 9}).status_code == 200
        assert client.get("/v1/jobs/ffffffffffffffffffffffffffffffff").status_code == 404
        with store.session() as session:
            job = jobs.create_job(session, "running-one", {"dataset": "digits"}, total_steps=10)
            attempt = jobs.claim_job(session, job.id, "w1", lease_s=60)
            assert attempt == 1
            jobs.update_progress(session, job.id, attempt, 4, 12.5, 0.5, {"d": 1.0},
                                 metrics={"fd": 3.25})  # fmt: skip
        after = _samples(client)

    route = "/v1/models/{name}/samples.png"
    requests = _value(after, "ganserve_http_requests_total", method="GET", route=route,
                      status="200") - _value(before, "ganserve_http_requests_total",
                                             method="GET", route=route, status="200")  # fmt: skip
    assert requests == 2
    missing = _value(after, "ganserve_http_requests_total", method="GET",
                     route="/v1/jobs/{job_id}", status="404")  # fmt: skip
    assert missing >= 1
    images = _value(after, "ganserve_images_generated_total") - _value(
        before, "ganserve_images_generated_total"
    )
    assert images == 18
    assert _value(after, "ganserve_generator_cache_loads_total") == 1
    assert _value(after, "ganserve_generator_cache_hits_total") >= 1
    # two sequential n=9 requests: two batches of one request each (the first loads the model)
    assert _value(after, "ganserve_sample_batches_total") == 2
    assert _value(after, "ganserve_sample_batched_requests_total") == 2
    assert _value(after, "ganserve_jobs", status="running") == 1
    assert _value(after, "ganserve_jobs", status="queued") == 1  # the registered model's job row
    assert (
        _value(after, "ganserve_job_steps_per_second", job_id=job.id, model="running-one") == 12.5
    )
    assert _value(after, "ganserve_job_metric", job_id=job.id, model="running-one",
                  metric="fd") == 3.25  # fmt: skip
    assert _value(after, "ganserve_queue_length", queue=settings.training_queue) == 0
    latency = _value(after, "ganserve_http_request_duration_seconds_count", method="GET",
                     route=route)  # fmt: skip
    assert latency >= 2
