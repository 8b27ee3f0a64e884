"""The web page in a real browser: headless Chromium (Debian's) driven by Playwright.

One stack for the module: a Celery worker, SQLite, the session's Redis, and two uvicorn API
processes on the same data: one open, one with API keys that also protect sampling. Every
process is started here and stopped by PID. Screenshots go to test-artifacts/browser/.

Without Playwright or a Chromium binary the tests skip, saying which is missing. The binary
is $GANSERVE_TEST_CHROMIUM, else /usr/bin/chromium (`apt-get install chromium`); Playwright's
own browser downloads are never used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.helpers.classifiers import seed_classifiers
from tests.helpers.processes import ManagedProcess, free_port, start_uvicorn

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
APP = "tests.browser.webapp:create_app"
API_KEY = "browser-test-key"
CHROMIUM_ENV = "GANSERVE_TEST_CHROMIUM"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}

try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
    from playwright.sync_api import expect as expect  # for the tests: none without playwright
except ImportError:  # the test extra is not installed: the tests skip, saying so
    sync_playwright = None
    expect = None


def chromium_path() -> str | None:
    path = os.environ.get(CHROMIUM_ENV) or "/usr/bin/chromium"
    found = shutil.which(path) if not os.path.isabs(path) else path
    return found if found and os.access(found, os.X_OK) else None


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if sync_playwright is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return (
            f"no Chromium at {os.environ.get(CHROMIUM_ENV) or '/usr/bin/chromium'} "
            f"(apt-get install chromium, or set {CHROMIUM_ENV})"
        )
    return None


@dataclass
class WebStack(Stack):
    """The e2e stack with the web page, plus a second API that requires keys."""

    keyed_port: int = 0
    keyed_api: ManagedProcess | None = None

    @property
    def keyed_url(self) -> str:
        return f"http://127.0.0.1:{self.keyed_port}"

    def start_api(self) -> None:
        self.port = free_port()
        self.api = start_uvicorn(
            APP, self.port, self.env, self.logs / "api.log", factory=True, ready_path="/readyz",
            cwd=ROOT,
        )  # fmt: skip

    def start_keyed_api(self) -> None:
        env = {**self.env, "GANSERVE_API_KEYS": API_KEY, "GANSERVE_PROTECT_SAMPLING": "true"}
        self.keyed_port = free_port()
        self.keyed_api = start_uvicorn(
            APP, self.keyed_port, env, self.logs / "api-keyed.log", factory=True,
            ready_path="/readyz", cwd=ROOT,
        )  # fmt: skip

    def stop(self) -> None:
        super().stop()
        if self.keyed_api is not None:
            self.keyed_api.stop()


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[WebStack]:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("browser")
    logs = root / "logs"
    logs.mkdir()
    env = {
        "GANSERVE_DATA_DIR": str(root / "data"),
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{root / 'db' / 'ganserve.db'}",
        "GANSERVE_TRAINING_QUEUE": f"ganserve-browser-{root.name}",
        "GANSERVE_PROGRESS_INTERVAL_S": "0.2",
        "GANSERVE_WORKER_DEVICE": "cpu",
        "GANSERVE_API_KEYS": "",
        "GANSERVE_PROTECT_SAMPLING": "false",
    }
    stack = WebStack(env=env, data_dir=root / "data", logs=logs)
    seed_classifiers(stack.data_dir)
    with ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        stack.start_api()  # applies the migrations before the others start
        stack.start_keyed_api()
        stack.start_worker()
        yield stack


@pytest.fixture(scope="module")
def browser(web_stack: WebStack) -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageErrors:
    """Uncaught exceptions and console errors of a page (failed image loads excepted)."""

    items: list[str]

    def check(self) -> None:
        assert not self.items, "the page reported errors:\n" + "\n".join(self.items)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(20_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[tuple[Page, PageErrors]]:
    page = context.new_page()
    errors = PageErrors([])

    def on_console(message: Any) -> None:
        # "Failed to load resource" is Chromium noting a 4xx the page handles (no preview yet,
        # a 401 without a key): the page shows those itself.
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.items.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.items.append(f"uncaught: {error}"))
    yield page, errors


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
