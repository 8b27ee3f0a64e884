"""The web page end to end in headless Chromium, against a real API, worker and Redis.

A person's path: submit a tiny job through the form (after a field's validation message),
watch it finish on the job page through the event stream, open the model, change the seed
and see a new image; at phone width nothing scrolls sideways; every control has an
accessible name. With API keys configured, the key field makes submitting and sampling work.
Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import base64
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import API_KEY, DESKTOP, PageErrors, WebStack, expect

pytestmark = pytest.mark.e2e

TRAIN_TIMEOUT_MS = 240_000  # a tiny job; generous for a busy CI machine
PHONE = {"width": 375, "height": 812}
# Roles of the controls a person operates; each needs a name (label, aria-label, text).
CONTROL_ROLES = {
    "button", "checkbox", "combobox", "link", "listbox", "progressbar", "radio", "searchbox",
    "slider", "spinbutton", "switch", "textbox",
}  # fmt: skip
SEED_RESPONSE = re.compile(r"/v1/models/[^/]+/samples\.png\?")


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def unnamed_controls(page: Any) -> tuple[int, list[str]]:
    """(controls seen, those without an accessible name), from Chromium's accessibility tree."""
    cdp = page.context.new_cdp_session(page)
    try:
        tree = cdp.send("Accessibility.getFullAXTree")
        seen, unnamed = 0, []
        for node in tree["nodes"]:
            role = node.get("role", {}).get("value")
            if node.get("ignored") or role not in CONTROL_ROLES:
                continue
            seen += 1
            if not str(node.get("name", {}).get("value", "")).strip():
                dom = cdp.send("DOM.describeNode", {"backendNodeId": node["backendDOMNodeId"]})
                attributes = dom["node"].get("attributes", [])
                unnamed.append(f"{role} <{dom['node']['localName']} {attributes}>")
        return seen, unnamed
    finally:
        cdp.detach()


def check_accessible_names(page: Any, where: str) -> None:
    seen, unnamed = unnamed_controls(page)
    assert seen >= 4, f"{where}: only {seen} controls in the accessibility tree"
    assert not unnamed, f"{where}: controls without an accessible name: {unnamed}"


def check_fits_phone(page: Any, where: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{where}: {width} px wide at a {PHONE['width']} px viewport"


def open_route(page: Any, base: str, route: str, ready: str) -> None:
    page.goto(f"{base}/#{route}")
    page.wait_for_selector(ready)


def wait_sample(page: Any, seed: str, action: Any) -> bytes:
    """Do `action`; the PNG the sampler then fetched for `seed`, once it is shown."""
    wanted = re.compile(rf"/samples\.png\?(.*&)?seed={seed}&")
    with page.expect_response(lambda r: wanted.search(r.url) is not None) as response_info:
        action()
    assert response_info.value.status == 200
    # (Playwright's expect, not wait_for_function: the page's CSP forbids eval.)
    expect(page.locator("#sample-img")).to_have_attribute("data-url", wanted)
    expect(page.locator("#sample-figure")).to_have_attribute("data-state", "loaded")
    assert page.evaluate("document.querySelector('#sample-img').naturalWidth") > 0
    body = shown_bytes(page, "#sample-img")
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    return body


def shown_bytes(page: Any, selector: str) -> bytes:
    """The bytes of the image an <img> shows (its blob: URL, read back in the page)."""
    encoded = page.evaluate(
        """async (selector) => {
            const response = await fetch(document.querySelector(selector).src);
            const bytes = new Uint8Array(await response.arrayBuffer());
            let text = '';
            for (const byte of bytes) text += String.fromCharCode(byte);
            return btoa(text);
        }""",
        selector,
    )
    return base64.b64decode(encoded)


@contextmanager
def worker_paused(stack: WebStack) -> Iterator[None]:
    """No worker inside the block (jobs stay queued); one running again after it."""
    assert stack.worker is not None
    stack.worker.stop()
    try:
        yield
    finally:
        stack.start_worker()


@pytest.mark.timeout(600)  # trains a model; the stack may start here too
def test_train_watch_and_sample_in_the_browser(
    web_stack: WebStack, page: tuple[Any, PageErrors], artifacts: Path
) -> None:
    tab, errors = page
    base = web_stack.url

    # --- the form: the server's defaults, and a field's validation message
    open_route(tab, base, "/submit", "#f-steps")
    assert tab.input_value("#f-steps") == "2000"  # from the OpenAPI schema
    assert tab.input_value("#f-architecture") == "mlp"
    assert tab.input_value("#f-dataset") == "digits"
    check_accessible_names(tab, "the submit form")
    tab.fill("#f-steps", "0")
    tab.get_by_role("button", name="Start training").click()
    error = tab.locator("#f-steps-error")
    error.wait_for()
    message = (error.text_content() or "").strip()
    assert message and not message.startswith("steps:"), message  # the server's, by the field
    assert tab.get_attribute("#f-steps", "aria-invalid") == "true"
    assert tab.evaluate("document.activeElement.id") == "f-steps"  # focus moves to it
    assert "#/submit" in tab.url  # nothing was submitted
    shot(tab, artifacts, "submit-validation")

    # --- a tiny job through the form, found by label as a person would. No worker runs until
    # the job page follows the job's events, so the page sees the whole run live.
    with worker_paused(web_stack):
        tab.get_by_label("Model name").fill("web-digits")
        tab.get_by_label("Steps", exact=True).fill("60")
        tab.get_by_label("Batch size").fill("32")
        tab.get_by_text("More settings").click()
        tab.get_by_label("Checkpoint every (steps)").fill("20")
        tab.get_by_label("Preview every (steps)").fill("20")
        tab.get_by_label("Device").fill("cpu")
        tab.focus("#f-sample_every")
        tab.keyboard.press("Enter")  # submits the form from a field
        tab.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
        job_id = tab.url.rsplit("/", 1)[1]
        tab.wait_for_selector("#job-stream[data-stream=open]")
        assert tab.text_content("#job-status") == "queued"
        tab.evaluate(
            """() => {
                window.statusesSeen = [];
                const badge = document.querySelector('#job-status');
                new MutationObserver(() => window.statusesSeen.push(badge.textContent))
                    .observe(badge, {childList: true, characterData: true, subtree: true});
            }"""
        )
        shot(tab, artifacts, "job-queued")

    # --- the job page follows the event stream until the job succeeds
    status = tab.locator("#job-status")
    expect(tab.locator("#job-status")).to_have_text("succeeded", timeout=TRAIN_TIMEOUT_MS)
    assert "running" in tab.evaluate("window.statusesSeen")
    stream = tab.locator("#job-stream")
    assert stream.get_attribute("data-stream") == "closed", stream.text_content()
    assert int(stream.get_attribute("data-events") or 0) >= 3  # status, progress..., status
    assert "Step 60 of 60" in (tab.text_content("#job-progress-text") or "")
    assert tab.get_attribute("#job-progress", "value") == "60"
    tab.wait_for_selector("#preview-figure[data-state=loaded]")
    tab.wait_for_selector("#history-figure[data-state=loaded]")
    assert status.text_content() == "succeeded"
    assert tab.locator("#job-cancel").is_hidden()  # nothing left to cancel
    check_accessible_names(tab, "the job page")
    shot(tab, artifacts, "job-succeeded")

    # --- the jobs list shows it
    open_route(tab, base, "/jobs", f"tr[data-job='{job_id}']")
    assert "succeeded" in (tab.text_content(f"tr[data-job='{job_id}']") or "")
    shot(tab, artifacts, "jobs")

    # --- the model: a new seed renders a new image, and the address keeps it
    tab.goto(f"{base}/#/jobs/{job_id}")
    first = wait_sample(tab, "0", lambda: tab.click("#job-model-link"))
    assert tab.input_value("#s-seed") == "0"
    assert tab.locator("#s-label").is_hidden()  # an unconditional model: no class choice

    def type_seed() -> None:
        tab.focus("#s-seed")
        tab.keyboard.press("ControlOrMeta+a")
        tab.keyboard.type("12345")

    second = wait_sample(tab, "12345", type_seed)
    assert second != first, "a different seed rendered the same bytes"
    assert "seed=12345" in tab.url
    assert "seed=12345" in tab.input_value("#s-share")
    tab.wait_for_selector("#interp-figure[data-state=loaded]")
    shot(tab, artifacts, "model-sampler")

    # the shared address, opened by someone else, restores the sampler and the same image
    other = tab.context.browser.new_context(viewport=DESKTOP)
    try:
        viewer = other.new_page()
        again = wait_sample(viewer, "12345", lambda: viewer.goto(tab.url))
        assert viewer.input_value("#s-seed") == "12345"
    finally:
        other.close()
    assert again == second

    # the random seed button picks another seed and renders it
    with tab.expect_response(lambda r: SEED_RESPONSE.search(r.url) is not None):
        tab.get_by_role("button", name="Random seed").click()
    assert tab.input_value("#s-seed") != "12345"

    # bulk export downloads a zip through a blob
    tab.fill("#b-n", "5")
    with tab.expect_download() as download_info:
        tab.get_by_role("button", name="Download").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".zip")
    saved = artifacts / "bulk-export.zip"
    download.save_as(str(saved))
    with zipfile.ZipFile(saved) as archive:
        names = archive.namelist()
    assert len([n for n in names if n.endswith(".png")]) == 5 and "labels.csv" in names
    expect(tab.locator("#bulk-status")).to_contain_text("Downloaded")
    check_accessible_names(tab, "the model page")

    # --- a phone-width screen: no sideways scrolling on any page
    tab.set_viewport_size(PHONE)
    routes = [
        ("/models", "#gallery .gallery-row[data-state=loaded]"),
        ("/models/web-digits?seed=7", "#sample-figure[data-state=loaded]"),
        ("/jobs", f"tr[data-job='{job_id}']"),
        (f"/jobs/{job_id}", "#preview-figure[data-state=loaded]"),
        ("/submit", "#f-steps"),
    ]
    for route, ready in routes:
        open_route(tab, base, route, ready)
        check_fits_phone(tab, route)
        check_accessible_names(tab, f"{route} at phone width")
    open_route(tab, base, "/models/web-digits?seed=7", "#sample-figure[data-state=loaded]")
    shot(tab, artifacts, "phone-model")
    open_route(tab, base, f"/jobs/{job_id}", "#preview-figure[data-state=loaded]")
    tab.wait_for_selector("#history-figure[data-state=loaded]")
    shot(tab, artifacts, "phone-job")
    open_route(tab, base, "/submit", "#f-steps")
    shot(tab, artifacts, "phone-submit")
    tab.click("#key-summary")  # the key form drops down within the screen too
    tab.wait_for_selector("#api-key")
    check_fits_phone(tab, "the open key form")
    shot(tab, artifacts, "phone-key-form")
    errors.check()


@pytest.mark.timeout(600)  # trains two tiny models
def test_the_gallery_shows_samples_of_every_model(
    web_stack: WebStack, page: tuple[Any, PageErrors], artifacts: Path
) -> None:
    tab, errors = page
    base = web_stack.url
    tiny = {"steps": 20, "batch_size": 32, "device": "cpu", "eval_samples": 50,
            "checkpoint_every": 20, "sample_every": 20}  # fmt: skip
    with httpx.Client(base_url=base, timeout=60) as client:
        ids = [
            client.post("/v1/jobs", json={**tiny, "name": "gallery-plain"}).json()["id"],
            client.post("/v1/jobs", json={**tiny, "name": "gallery-cgan", "conditional": True})
            .json()["id"],
        ]  # fmt: skip
        for job_id in ids:
            wait_until_finished(client, job_id)
        models = client.get("/v1/models").json()["items"]
    names = [m["name"] for m in models]
    assert {"gallery-plain", "gallery-cgan"} <= set(names)

    tab.goto(f"{base}/#/models")
    try:
        tab.wait_for_selector("#gallery", timeout=60_000)
    except Exception as exc:  # say what the page shows instead
        raise AssertionError(f"no gallery; the page says: {tab.inner_text('#view')!r}") from exc
    for name in names:  # every model's card shows a sample image of its serving version
        card = tab.locator(f"#gallery li[data-model='{name}']")
        expect(card.locator(".gallery-row[data-state=loaded]").first).to_be_visible()
        width = card.locator(".gallery-row img").first.evaluate("img => img.naturalWidth")
        assert width >= 200, f"{name}: a {width} px sample grid"  # upscaled to be seen
        assert "latest" in (card.text_content() or "")  # its aliases
    plain = tab.locator("#gallery li[data-model='gallery-plain'] .gallery-row")
    assert plain.count() == 1
    src = plain.locator("img").get_attribute("data-url") or ""
    assert "version=1" in src and "n=8" in src and "label=" not in src
    # a conditional model: one row per class, each labelled with the class and asking for it
    rows = tab.locator("#gallery li[data-model='gallery-cgan'] .gallery-row")
    expect(rows.nth(9)).to_have_attribute("data-state", "loaded")
    assert rows.count() == 10
    assert [rows.nth(i).locator(".gallery-class").text_content() for i in range(10)] == [
        str(i) for i in range(10)
    ]
    assert "label=7" in (rows.nth(7).locator("img").get_attribute("data-url") or "")
    metrics = tab.locator("#gallery li[data-model='gallery-plain'] dl.pairs")
    expect(metrics).to_contain_text("fd")  # key metrics of the serving version
    check_accessible_names(tab, "the gallery")
    shot(tab, artifacts, "gallery-desktop")

    tab.set_viewport_size(PHONE)
    open_route(tab, base, "/models", "#gallery .gallery-row[data-state=loaded]")
    expect(rows.nth(9)).to_have_attribute("data-state", "loaded")
    check_fits_phone(tab, "the gallery")
    shot(tab, artifacts, "gallery-phone")
    # the shareable link keeps its whole width at phone size
    open_route(tab, base, "/models/gallery-plain?seed=7", "#sample-figure[data-state=loaded]")
    share = tab.locator("#s-share").bounding_box()
    assert share is not None and share["width"] >= PHONE["width"] * 0.7, share
    check_fits_phone(tab, "the model page")
    errors.check()


def wait_until_finished(client: httpx.Client, job_id: str, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


def test_cancel_from_the_job_page(
    web_stack: WebStack, page: tuple[Any, PageErrors], artifacts: Path
) -> None:
    tab, errors = page
    with httpx.Client(base_url=web_stack.url, timeout=30) as client:
        response = client.post(
            "/v1/jobs", json={"name": "web-long", "steps": 1_000_000, "batch_size": 32}
        )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    open_route(tab, web_stack.url, f"/jobs/{job_id}", "#job-stream[data-stream=open]")
    tab.get_by_role("button", name="Cancel job").click()
    expect(tab.locator("#job-status")).to_have_text("cancelled", timeout=60_000)
    expect(tab.locator("#job-stream")).to_have_attribute("data-stream", "closed")
    assert tab.locator("#job-cancel").is_hidden()
    shot(tab, artifacts, "job-cancelled")
    errors.check()


@pytest.mark.timeout(600)  # trains a model; the stack may start here too
def test_api_keys_in_the_browser(
    web_stack: WebStack, page: tuple[Any, PageErrors], artifacts: Path
) -> None:
    """Keys required to submit and (protect_sampling) to sample: the key field makes it work."""
    tab, errors = page
    base = web_stack.keyed_url

    open_route(tab, base, "/submit", "#f-steps")
    tab.fill("#f-name", "web-keyed")
    tab.fill("#f-steps", "40")
    tab.fill("#f-batch_size", "32")
    tab.check("#f-conditional")
    tab.get_by_text("More settings").click()
    tab.fill("#f-checkpoint_every", "20")
    tab.fill("#f-sample_every", "20")
    tab.get_by_role("button", name="Start training").click()
    refusal = tab.locator("#submit-error")
    refusal.wait_for()
    expect(refusal).to_contain_text("API key")
    assert tab.evaluate("document.querySelector('#key-panel').open")  # the key field is shown
    assert "#/submit" in tab.url
    shot(tab, artifacts, "submit-needs-key")

    # a wrong key is refused as such
    tab.fill("#api-key", "not-the-key")
    tab.get_by_role("button", name="Save key").click()
    tab.get_by_role("button", name="Start training").click()
    expect(refusal).to_contain_text("not valid")

    # the right key: kept in sessionStorage, sent as a Bearer token, and the job starts
    tab.fill("#api-key", API_KEY)
    tab.get_by_role("button", name="Save key").click()
    assert tab.evaluate("sessionStorage.getItem('ganserve.apiKey')") == API_KEY
    assert "stored" in (tab.text_content("#key-status") or "")
    assert not tab.evaluate("document.querySelector('#key-panel').open")  # closed once saved
    expect(tab.locator("#key-summary")).to_have_text("API key (set)")
    with tab.expect_request(lambda r: r.url.endswith("/v1/jobs") and r.method == "POST") as sent:
        tab.get_by_role("button", name="Start training").click()
    assert sent.value.headers.get("authorization") == f"Bearer {API_KEY}"
    tab.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    # the event stream needs no key (a GET): the page still follows the job to its end
    expect(tab.locator("#job-status")).to_have_text("succeeded", timeout=TRAIN_TIMEOUT_MS)

    # sampling is protected: with the key the images load, the class select is offered
    tab.reload()  # the key survives a reload of the tab
    assert tab.input_value("#api-key") == API_KEY
    wait_sample(tab, "0", lambda: tab.click("#job-model-link"))
    assert tab.locator("#s-label").is_visible()  # a conditional model
    assert tab.locator("#s-label option").count() == 11  # "any" + the ten digits
    wait_sample(tab, "0", lambda: tab.select_option("#s-label", label="7"))
    assert "label=7" in tab.url
    check_accessible_names(tab, "the conditional model page")
    shot(tab, artifacts, "model-conditional-with-key")

    # without the key the sampler says why instead of showing a broken image
    if not tab.evaluate("document.querySelector('#key-panel').open"):
        tab.click("#key-summary")
    tab.get_by_role("button", name="Forget key").click()
    assert tab.evaluate("sessionStorage.getItem('ganserve.apiKey')") is None
    tab.reload()
    assert tab.input_value("#api-key") == ""
    # a seed not seen before (the browser may keep the images it was allowed to fetch)
    with tab.expect_response(lambda r: "seed=999&" in r.url) as refused:
        tab.fill("#s-seed", "999")
    assert refused.value.status == 401
    expect(tab.locator("#sample-figure")).to_have_attribute("data-state", "error")
    expect(tab.locator("#sample-error")).to_contain_text("API key")
    assert tab.locator("#sample-img").is_hidden()
    shot(tab, artifacts, "model-needs-key")
    errors.check()
