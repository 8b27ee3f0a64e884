"""GET /v1/jobs/{id}/history.png: the curves, drawn server-side."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from PIL import Image

from ganserve.service.jobs.plots import render_history_png
from ganserve.store import jobs, metrics


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_history_png_of_a_job(client: TestClient) -> None:
    store = client.app.state.context.store  # type: ignore[attr-defined]
    with store.session() as session:
        job = jobs.create_job(session, "curves", {"dataset": "digits"}, total_steps=30)
        for step in (10, 20, 30):
            metrics.append_metrics(session, job.id, step, {
                "loss_d": 1.0 / step, "loss_g": 0.5 + step / 100, "d_real": 0.7, "d_fake": 0.3,
            })  # fmt: skip
        metrics.append_metrics(session, job.id, 30, {"fd": 12.5, "coverage": 9.0})
    response = client.get(f"/v1/jobs/{job.id}/history.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = _image(response.content)
    assert image.width == 900
    # four panels (losses, D outputs, FD, coverage) make it taller than one empty panel
    empty = _image(render_history_png({}, "empty"))
    assert image.height > 3 * empty.height // 2
    assert client.get("/v1/jobs/ffffffffffffffffffffffffffffffff/history.png").status_code == 404


def test_panels_follow_the_series_present() -> None:
    one = _image(render_history_png({"loss_d": [(1, 1.0), (2, 0.5)]}, "t"))
    three = _image(render_history_png({
        "loss_d": [(1, 1.0)], "d_real": [(1, 0.5)], "kid": [(1, 0.1)],
    }, "t"))  # fmt: skip
    assert three.height > one.height
    assert len(one.getcolors(maxcolors=100_000) or []) > 10  # something drawn, not blank


def test_per_class_diversity_and_accuracy_get_a_panel_each_with_a_line_per_class() -> None:
    steps = (100, 200, 300)
    base = {"fd": [(s, 10.0 - s / 100) for s in steps]}
    per_class = {
        f"class_div.{k}": [(s, 0.9 - (0.6 if k == 3 else 0.0) * s / 300) for s in steps]
        for k in range(10)
    } | {f"class_acc.{k}": [(s, 1.0) for s in steps] for k in range(10)}
    plain = _image(render_history_png(base, "t"))
    with_classes = _image(render_history_png(base | per_class, "t"))
    # two more panels, of the same height as the others
    assert with_classes.height > 2 * plain.height
    # series that merely share the prefix are not drawn as classes
    odd = _image(render_history_png(base | {"class_div.x": [(1, 1.0)]}, "t"))
    assert odd.height == plain.height
