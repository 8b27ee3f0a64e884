"""The web page's routes, in-process (no browser, no broker): files, headers, the schema."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ganserve.service import app as service_app
from ganserve.service.routes.web import ASSETS, WEB_DIR
from ganserve.settings import Settings
from tests.browser.webapp import with_web_page

# Never connected to: the app's lifespan (which would) does not run in these tests.
UNUSED_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def client() -> TestClient:
    # Not entered as a context manager: no lifespan, so nothing connects to Redis or a DB.
    return TestClient(with_web_page(service_app.create_app(Settings(redis_url=UNUSED_REDIS))))


def test_the_page_and_its_files(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="ui/app.js">' in index.text
    for name, media_type in ASSETS.items():
        response = client.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.content == (WEB_DIR / name).read_bytes()
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.head("/").status_code == 200


def test_etag_revalidation(client: TestClient) -> None:
    first = client.get("/ui/app.js")
    again = client.get("/ui/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/ui/app.js", headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    "path", ["/ui/nothing.js", "/ui/..%2Fapp.py", "/ui/%2E%2E%2Froutes%2Fweb.py", "/ui/"]
)
def test_only_the_pages_files_are_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_the_page_stays_out_of_the_api_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/ui") for path in paths)


def test_the_page_uses_only_relative_urls_and_no_inline_code() -> None:
    # Relative URLs: the page also works behind a proxy that mounts the service under a path.
    # No inline scripts or styles: the Content-Security-Policy forbids them.
    html = (WEB_DIR / "index.html").read_text()
    script = (WEB_DIR / "app.js").read_text()
    assert 'src="/' not in html and 'href="/' not in html
    assert "<style" not in html and " style=" not in html and "<script>" not in html
    assert 'fetch("/' not in script and "`/v1" not in script and '"/v1' not in script
    assert "http://" not in script and "https://" not in script  # nothing from elsewhere


def test_including_the_router_twice_is_avoided() -> None:
    app = service_app.create_app(Settings(redis_url=UNUSED_REDIS))
    once = len(with_web_page(app).routes)
    assert len(with_web_page(app).routes) == once
    assert app.url_path_for("web_page") == "/"
