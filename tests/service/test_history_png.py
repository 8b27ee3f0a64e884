"""GET /v1/jobs/{id}/history.png: the curves, drawn server-side."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from PIL import Image

from ganserve.gan.translation.quality import (
    DEFAULT_ALARM_KEPT,
    DEFAULT_ALARM_SPREAD,
    DirectionReport,
    TranslationReport,
)
from ganserve.service.jobs.plots import history_panels, render_history_png
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


def _translation_metrics(step: int) -> dict[str, float]:
    """What a CycleGAN job's evaluation at `step` stores (gan.translation.quality)."""
    a2b = DirectionReport(kept=0.5 + step / 100, fd=40.0 - step, fd_input=95.0,
                          cycle=0.3 - step / 200, spread=0.6)  # fmt: skip
    b2a = DirectionReport(kept=0.4 + step / 100, fd=30.0 - step, fd_input=110.0,
                          cycle=0.25 - step / 200, spread=0.5)  # fmt: skip
    return TranslationReport(a2b, b2a, 500, ("ea", "eb"), (0.99, 0.9), 1.5).as_metrics()


def test_a_translation_jobs_chart_shows_its_translation_metrics(client: TestClient) -> None:
    store = client.app.state.context.store  # type: ignore[attr-defined]
    spec = {"architecture": "cyclegan", "dataset": "digits"}
    with store.session() as session:
        job = jobs.create_job(session, "colour", spec, total_steps=20)
        for step in (5, 10, 15, 20):
            metrics.append_metrics(session, job.id, step, {
                "loss_d": 0.5, "loss_g": 0.7, "loss_cycle": 0.4 - step / 100,
                "loss_identity": 0.3 - step / 100, "d_real": 0.6, "d_fake": 0.4,
            })  # fmt: skip
        for step in (10, 20):
            metrics.append_metrics(session, job.id, step, _translation_metrics(step))
    series = client.get(f"/v1/jobs/{job.id}/history").json()["series"]
    panels = history_panels(series)
    assert [panel.series for panel in panels] == [
        ("loss_d", "loss_g", "loss_cycle", "loss_identity"),
        ("d_real", "d_fake"),
        ("fd",),  # the mean of both directions: what `best` and rollback compare
        ("kept_a2b", "kept_b2a"),
        ("fd_a2b", "fd_input_a2b"),
        ("fd_b2a", "fd_input_b2a"),
        ("cycle_a2b", "cycle_b2a"),
        ("spread_a2b", "spread_b2a"),
    ]
    titles = [panel.title for panel in panels]
    assert titles[3].startswith("digit kept") and titles[6].startswith("cycle reconstruction")
    assert titles[4].startswith("a2b") and titles[5].startswith("b2a")
    assert all("translations vs untranslated inputs" in title for title in titles[4:6])
    alarms = {panel.series[0]: panel.alarm_below for panel in panels if panel.alarm_below}
    assert alarms == {"kept_a2b": DEFAULT_ALARM_KEPT, "spread_a2b": DEFAULT_ALARM_SPREAD}

    # the route draws exactly these panels: 8 rows of 2.4 inches at 100 dpi, plus the title
    response = client.get(f"/v1/jobs/{job.id}/history.png")
    assert response.status_code == 200
    image = _image(response.content)
    assert image.size == (900, round((2.4 * 8 + 0.6) * 100))
    assert response.content == render_history_png(series, f"job {job.id} — step 0")


def test_a_noise_gans_chart_has_no_translation_panels() -> None:
    series = {"loss_d": [(1, 1.0)], "fd": [(1, 9.0)], "coverage": [(1, 10.0)]}
    assert [panel.title for panel in history_panels(series)] == [
        "losses", "Fréchet distance", "class coverage",
    ]  # fmt: skip
