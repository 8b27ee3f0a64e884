"""/docs and /redoc render the API's operations with the network closed to all but the API.

No worker is needed: one uvicorn in a thread (SQLite, the session's Redis) and Debian's
Chromium, every request to another host aborted (and counted: there must be none).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from ganserve.service.app import create_app
from ganserve.settings import Settings
from tests.browser.conftest import CHROMIUM_ARGS, browser_missing, chromium_path, sync_playwright
from tests.helpers.processes import free_port


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    if (missing := browser_missing()) is not None:
        pytest.skip(missing)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("docs") / "data",
        redis_url=redis_url,
        database_url=None,
    )
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("page_path", "operation"),
    [("/docs", ".opblock"), ("/redoc", "[data-section-id^='tag/']")],
)
def test_the_docs_render_offline(
    api_url: str, page_path: str, operation: str, tmp_path: Path
) -> None:
    assert sync_playwright is not None
    elsewhere: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()

            def only_the_api(route) -> None:  # type: ignore[no-untyped-def]
                if route.request.url.startswith(api_url):
                    route.continue_()
                else:
                    elsewhere.append((route.request.resource_type, route.request.url))
                    route.abort()

            page.route("**/*", only_the_api)
            page.goto(api_url + page_path)
            page.wait_for_selector(operation, timeout=30_000)
            if page_path == "/docs":
                assert page.locator(".opblock").count() >= 20
                assert page.get_by_text("/v1/jobs", exact=True).first.is_visible()
            else:
                heading = page.get_by_role("heading", name="Submit a training job")
                assert heading.count() >= 1
            page.screenshot(path=str(tmp_path / "docs.png"))
        finally:
            browser.close()
    # ReDoc's bundle links its own logo on a CDN (an <img>, decoration); every script, style
    # sheet and font it needs comes from the API.
    assert [url for kind, url in elsewhere if kind != "image"] == [], elsewhere
