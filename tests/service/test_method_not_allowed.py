"""405 names every method the path allows, not only those of the first route that matched."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_a_method_not_allowed_says_which_are(client: TestClient) -> None:
    response = client.put("/v1/jobs")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
    job = "0" * 32
    allowed = client.delete(f"/v1/jobs/{job}/cancel").headers["allow"]
    assert allowed == "POST"
