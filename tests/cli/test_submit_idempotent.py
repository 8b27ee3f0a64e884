"""`ganserve jobs submit` sends an Idempotency-Key and resends a dropped submit with it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ganserve.cli import client as cli_client


def test_a_dropped_submit_is_resent_with_the_same_key(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("idempotency-key", ""))
        if len(seen) == 1:  # the connection drops before the answer arrives
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(202, json={"id": "a" * 32})

    def fake_client(url: str, api_key: str | None, timeout: float | None = 30.0) -> Any:
        return httpx.Client(base_url=url, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli_client, "_client", fake_client)
    monkeypatch.setattr(cli_client.time, "sleep", lambda _s: None)
    response = cli_client.submit_once("http://api", None, {"steps": 5})
    assert response.json()["id"] == "a" * 32
    assert len(seen) == 2 and seen[0] and seen[0] == seen[1]
