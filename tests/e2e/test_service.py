"""A user's path through the service over real HTTP: train, watch, sample, manage, cancel."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.conftest import Stack, wait_for, wait_for_status

pytestmark = pytest.mark.e2e

JOB = {"dataset": "digits", "batch_size": 64, "checkpoint_every": 100, "sample_every": 100}


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture(scope="module")
def trained(stack: Stack) -> dict:
    """An unconditional job followed from queued to succeeded, watching its progress move."""
    with stack.client() as client:
        response = client.post("/v1/jobs", json={**JOB, "name": "digits-mlp", "steps": 400})
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        seen: list[int] = []

        def finished() -> dict | None:
            current = client.get(f"/v1/jobs/{job['id']}").json()
            if current["status"] == "running":
                seen.append(current["progress"]["step"])
            return current if current["status"] in ("succeeded", "failed") else None

        final = wait_for(finished, 180, "the job to finish", interval=0.05)
    assert final["status"] == "succeeded", final
    assert final["progress"]["step"] == 400
    # progress was visible while it ran, and it moved forward
    distinct = sorted(set(seen))
    assert len(distinct) >= 2 and all(0 <= s <= 400 for s in distinct), seen
    assert final["model"] == {"name": "digits-mlp", "version": 1}
    return final


@pytest.fixture(scope="module")
def conditional(stack: Stack) -> dict:
    with stack.client() as client:
        response = client.post(
            "/v1/jobs", json={**JOB, "name": "digits-cgan", "steps": 200, "conditional": True}
        )
        assert response.status_code == 202, response.text
        final = wait_for_status(client, response.json()["id"], {"succeeded", "failed"}, 180)
    assert final["status"] == "succeeded", final
    return final


def test_samples_are_deterministic_pngs_across_restarts(stack: Stack, trained: dict) -> None:
    with stack.client() as client:
        first = client.get("/v1/models/digits-mlp/samples.png", params={"seed": 1})
        again = client.get("/v1/models/digits-mlp/samples.png", params={"seed": 1})
        other = client.get("/v1/models/digits-mlp/samples.png", params={"seed": 2})
        grid = client.get("/v1/models/digits-mlp/samples.png",
                          params={"seed": 5, "n": 10, "nrow": 5, "scale": 2})  # fmt: skip
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.headers["x-model-version"] == "1" and first.headers["x-seed"] == "1"
    assert _png(first.content).size == (8, 8) and _png(first.content).mode == "L"
    assert first.content == again.content
    assert first.content != other.content
    # 2 rows x 5 columns of 8 px images with 1 px padding, doubled
    assert _png(grid.content).size == ((5 * 9 + 1) * 2, (2 * 9 + 1) * 2)

    stack.restart_api()
    with stack.client() as client:
        after = client.get("/v1/models/digits-mlp/samples.png", params={"seed": 1})
    assert after.content == first.content


def test_preview_and_history_of_a_finished_job(stack: Stack, trained: dict) -> None:
    with stack.client() as client:
        preview = client.get(f"/v1/jobs/{trained['id']}/preview.png")
        events = client.get(f"/v1/jobs/{trained['id']}/events")
    assert preview.status_code == 200 and _png(preview.content).size == (8 * 9 + 1, 8 * 9 + 1)
    assert events.status_code == 200
    kinds = [line[7:] for line in events.text.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "status" and kinds[-1] == "status" and "progress" in kinds
    assert "checkpoint" in kinds and "model" in kinds


def test_conditional_sample_of_a_chosen_class(stack: Stack, conditional: dict) -> None:
    with stack.client() as client:
        three = client.get("/v1/models/digits-cgan/samples.png", params={"seed": 3, "label": 3})
        three_again = client.get("/v1/models/digits-cgan/samples.png",
                                 params={"seed": 3, "label": 3})  # fmt: skip
        four = client.get("/v1/models/digits-cgan/samples.png", params={"seed": 3, "label": 4})
        bad = client.get("/v1/models/digits-cgan/samples.png", params={"label": 10})
        unconditional = client.get("/v1/models/digits-mlp/samples.png", params={"label": 1})
    assert three.status_code == 200 and three.content == three_again.content
    assert three.content != four.content
    assert bad.status_code == 422 and bad.json()["field"] == "label"
    assert unconditional.status_code == 422 and unconditional.json()["field"] == "label"


def test_bulk_zip_labels_match_files(stack: Stack, conditional: dict) -> None:
    body = {"n": 12, "seed": 100, "labels": [i % 10 for i in range(12)], "format": "zip"}
    with stack.client() as client:
        response = client.post("/v1/models/digits-cgan/samples", json=body)
        single = client.get("/v1/models/digits-cgan/samples.png",
                            params={"seed": 105, "label": 5})  # fmt: skip
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    pngs = sorted(n for n in archive.namelist() if n.endswith(".png"))
    assert len(rows) == 12 and sorted(r["file"] for r in rows) == pngs
    assert [int(r["seed"]) for r in rows] == list(range(100, 112))
    assert [int(r["label"]) for r in rows] == [i % 10 for i in range(12)]
    row = next(r for r in rows if r["seed"] == "105")
    assert archive.read(row["file"]) == single.content


def test_versions_and_aliases(stack: Stack, trained: dict) -> None:
    with stack.client() as client:
        second = client.post("/v1/jobs", json={**JOB, "name": "digits-mlp", "steps": 20,
                                               "seed": 7})  # fmt: skip
        wait_for_status(client, second.json()["id"], {"succeeded"}, 120)
        model = client.get("/v1/models/digits-mlp").json()
        assert [v["version"] for v in model["versions"]] == [1, 2]
        assert client.get("/v1/models/digits-mlp/versions/2").json()["step"] == 20
        names = [m["name"] for m in client.get("/v1/models").json()["items"]]
        assert "digits-mlp" in names

        v1 = client.get("/v1/models/digits-mlp/samples.png", params={"version": "1"}).content
        latest = client.get("/v1/models/digits-mlp/samples.png").content
        assert latest != v1  # latest is version 2 now
        moved = client.put("/v1/models/digits-mlp/aliases/production", json={"version": 1})
        assert moved.status_code == 200, moved.text
        prod = client.get("/v1/models/digits-mlp/samples.png", params={"version": "production"})
        assert prod.content == v1 and prod.headers["x-model-version"] == "1"
        client.put("/v1/models/digits-mlp/aliases/production", json={"version": 2})
        prod = client.get("/v1/models/digits-mlp/samples.png", params={"version": "production"})
        assert prod.content == latest and prod.headers["x-model-version"] == "2"

        assert client.delete("/v1/models/digits-mlp/versions/2").status_code == 204
        assert client.get("/v1/models/digits-mlp/versions/2").status_code == 404
        after = client.get("/v1/models/digits-mlp/samples.png")
        assert after.headers["x-model-version"] == "1" and after.content == v1


def test_cancel_a_running_job(stack: Stack) -> None:
    with stack.client() as client:
        job = client.post("/v1/jobs", json={**JOB, "name": "long", "steps": 200_000}).json()
        wait_for(
            lambda: client.get(f"/v1/jobs/{job['id']}").json()["progress"]["step"] > 0,
            120, "the job to make progress",
        )  # fmt: skip
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
        final = wait_for_status(client, job["id"], {"cancelled"}, 15)
    assert 0 < final["progress"]["step"] < 200_000
    checkpoints = Path(stack.data_dir, "artifacts", "jobs", job["id"], "checkpoints")
    assert any(p.suffix == ".pt" for p in checkpoints.iterdir())
    assert final["model"] is None


def test_bad_input_and_unknown_ids(stack: Stack) -> None:
    with stack.client() as client:
        bad = client.post("/v1/jobs", json={"architecture": "resnet"})
        steps = client.post("/v1/jobs", json={"steps": 0})
        unknown_job = client.get("/v1/jobs/0123456789abcdef0123456789abcdef")
        unknown_model = client.get("/v1/models/nope/samples.png")
        too_many = client.get("/v1/models/nope/samples.png", params={"n": 10**6})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["field"] == "architecture" and "mlp, dcgan" in bad.json()["detail"]
    assert steps.status_code == 422 and steps.json()["field"] == "steps"
    assert unknown_job.status_code == 404 and unknown_job.json()["status"] == 404
    assert unknown_model.status_code == 404
    assert too_many.status_code in (404, 413, 422)


def test_readyz_and_docs(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as client:
        ready = client.get("/readyz").json()
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert ready["status"] == "ready"
    assert "/v1/jobs" in spec["paths"] and "/v1/models/{name}/samples.png" in spec["paths"]
    assert docs.status_code == 200


def test_command_line_client_follows_a_job_and_samples(stack: Stack, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ganserve.cli.main import app

    runner = CliRunner()
    submitted = runner.invoke(
        app,
        ["jobs", "submit", "--url", stack.url, "--name", "from-cli", "--steps", "40",
         "--batch-size", "32", "--follow"],
    )  # fmt: skip
    assert submitted.exit_code == 0, submitted.output
    assert "registered model from-cli version 1" in submitted.output
    assert "succeeded" in submitted.output

    grid = tmp_path / "grid.png"
    sampled = runner.invoke(
        app, ["models", "sample", "from-cli", "-n", "16", "-o", str(grid), "--url", stack.url]
    )
    assert sampled.exit_code == 0, sampled.output
    # a 4x4 grid of 8 px digits is 37 px; the CLI's default scale makes it readable (>= 256 px)
    assert _png(grid.read_bytes()).size == (7 * 37, 7 * 37)
    small = runner.invoke(
        app, ["models", "sample", "from-cli", "-n", "16", "--scale", "1", "-o", str(grid),
              "--url", stack.url],
    )  # fmt: skip
    assert small.exit_code == 0, small.output
    assert _png(grid.read_bytes()).size == (4 * 9 + 1, 4 * 9 + 1)

    listed = runner.invoke(app, ["jobs", "list", "--url", stack.url, "--status", "succeeded"])
    assert listed.exit_code == 0 and "from-cli" in listed.output
    missing = runner.invoke(app, ["models", "sample", "nope", "-o", str(grid), "--url", stack.url])
    assert missing.exit_code == 1 and "error 404" in missing.output


def _events(response: httpx.Response) -> list[tuple[str | None, str, dict]]:
    """(id, type, data) of each Server-Sent Event in a finished stream's body."""
    parsed, event_id, kind = [], None, "message"
    for line in response.text.splitlines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            parsed.append((event_id, kind, json.loads(line[5:].strip())))
        elif not line:
            event_id, kind = None, "message"
    return parsed


def test_event_stream_resumes_after_last_event_id(stack: Stack, trained: dict) -> None:
    with stack.client() as client:
        full = _events(client.get(f"/v1/jobs/{trained['id']}/events"))
        steps = [data["step"] for _, kind, data in full if kind == "progress"]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)  # in order, no repeats
        assert full[-1][1] == "status" and full[-1][2]["status"] == "succeeded"
        cut = full[len(full) // 2][0]
        assert cut is not None
        rest = _events(client.get(f"/v1/jobs/{trained['id']}/events",
                                  headers={"Last-Event-ID": cut}))  # fmt: skip
    ids = [event_id for event_id, _, _ in full]
    assert [event_id for event_id, _, _ in rest] == ids[ids.index(cut) + 1 :]
    assert rest[-1][2]["status"] == "succeeded"


def test_history_metrics_and_curves_of_a_real_job(stack: Stack, trained: dict) -> None:
    with stack.client() as client:
        history = client.get(f"/v1/jobs/{trained['id']}/history").json()
        curves = client.get(f"/v1/jobs/{trained['id']}/history.png")
        scrape = client.get("/metrics").text
        job = client.get(f"/v1/jobs/{trained['id']}").json()
        version = client.get("/v1/models/digits-mlp/versions/1").json()
    series = history["series"]
    for name in ("loss_d", "loss_g", "d_real", "d_fake", "fd", "kid", "coverage", "kl_uniform"):
        steps = [step for step, _ in series[name]]
        assert steps and steps == sorted(set(steps)), name
    assert [step for step, _ in series["fd"]] == [400]  # eval_every 500 > steps: at the end
    assert job["latest_metrics"]["fd"] == series["fd"][-1][1] == version["metrics"]["fd"]
    assert curves.status_code == 200 and _png(curves.content).width == 900
    succeeded = [line for line in scrape.splitlines()
                 if line.startswith('ganserve_jobs{status="succeeded"}')]  # fmt: skip
    assert succeeded and float(succeeded[0].split()[-1]) >= 1
