"""Responses never reveal server paths; echoed input is cut short."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ganserve.settings import Settings


def test_dataset_hints_name_paths_relative_to_the_data_dir(
    client: TestClient, settings: Settings
) -> None:
    response = client.get("/v1/datasets")
    assert response.status_code == 200
    unavailable = [item for item in response.json()["items"] if not item["available"]]
    assert unavailable and all(item["hint"] for item in unavailable)
    assert str(settings.data_dir.resolve()) not in response.text
    assert "/tmp" not in response.text


def test_an_unknown_dataset_is_named_without_the_data_path(
    client: TestClient, settings: Settings
) -> None:
    response = client.post("/v1/jobs", json={"dataset": "cifar10"})
    assert response.status_code == 422, response.text
    assert str(settings.data_dir.resolve()) not in response.text and "/tmp" not in response.text


def test_a_huge_echoed_value_is_cut(client: TestClient) -> None:
    version = "v" * 50_000
    response = client.get("/v1/models/nope/samples.png", params={"version": version})
    assert response.status_code in (404, 422)
    assert len(response.content) < 4000
