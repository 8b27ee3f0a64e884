"""A tiny CycleGAN through the real API and worker: two uploaded domains, a job, a registered
translator, pictures translated both ways with deterministic bytes."""

from __future__ import annotations

import io
import zipfile

from PIL import Image

from tests.e2e.conftest import Stack, wait_for_status


def _zip(mode: str, colours: list[int]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, value in enumerate(colours):
            image = Image.new(mode, (12, 12), value if mode == "L" else (value, 40, 200 - value))
            image.paste(255 if mode == "L" else (255, 255, 255), (3 + i % 4, 2, 6 + i % 4, 10))
            png = io.BytesIO()
            image.save(png, format="PNG")
            archive.writestr(f"{i}.png", png.getvalue())
    return buffer.getvalue()


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_train_a_cyclegan_and_translate_both_ways(stack: Stack) -> None:
    with stack.client() as client:
        for name, mode in (("zebras", "L"), ("horses", "RGB")):
            upload = client.post(
                "/v1/datasets", params={"name": name, "image_size": 8},
                content=_zip(mode, list(range(10, 200, 20))),
                headers={"Content-Type": "application/zip"},
            )  # fmt: skip
            assert upload.status_code in (200, 201), upload.text
        spec = {
            "name": "z2h", "architecture": "cyclegan", "dataset": "zebras",
            "dataset_b": "horses", "steps": 4, "batch_size": 2, "checkpoint_every": 2,
            "sample_every": 2, "eval_every": 0, "device": "cpu", "pool_size": 3,
        }  # fmt: skip
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        job = wait_for_status(client, response.json()["id"], {"succeeded", "failed"}, 180)
        assert job["status"] == "succeeded", job
        preview = client.get(f"/v1/jobs/{job['id']}/preview.png")
        assert preview.status_code == 200
        # the translation grid: 6 rows (A, G(A), F(G(A)), B, F(B), G(F(B))) of 8 px images
        assert Image.open(io.BytesIO(preview.content)).size[1] == 6 * 9 + 1
        version = client.get("/v1/models/z2h/versions/1").json()
        assert version["kind"] == "translation" and version["domains"] == ["zebras", "horses"]

        answers = {}
        for direction in ("a2b", "b2a"):
            for _attempt in range(2):
                translated = client.post(
                    "/v1/models/z2h/translate", params={"direction": direction},
                    content=_png((20, 14)), headers={"Content-Type": "image/png"},
                )  # fmt: skip
                assert translated.status_code == 200, translated.text
                assert translated.headers["x-model-version"] == "1"
                answers.setdefault(direction, set()).add(translated.content)
            assert Image.open(io.BytesIO(translated.content)).size == (8, 8)
        assert all(len(bodies) == 1 for bodies in answers.values())  # same input, same bytes
        assert answers["a2b"] != answers["b2a"]
        kept = client.post(
            "/v1/models/z2h/translate", params={"direction": "a2b", "keep_size": "true"},
            content=_png((21, 13)), headers={"Content-Type": "image/png"},
        )  # fmt: skip
        assert Image.open(io.BytesIO(kept.content)).size == (21, 13)
        refused = client.post(
            "/v1/models/z2h/translate", content=b"<html>", headers={"Content-Type": "image/png"}
        )
        assert refused.status_code == 422 and refused.json()["field"] == "image"
        grid = client.get("/v1/models/z2h/samples.png", params={"seed": 3})
        assert grid.status_code == 200 and grid.content.startswith(b"\x89PNG")
        noise = client.get("/v1/models/z2h/samples.png", params={"truncation": 0.5})
        assert noise.status_code == 422 and noise.json()["field"] == "truncation"
