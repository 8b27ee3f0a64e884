"""The Train form in a real browser shows every declared training field, from the schema.

The page builds the form from `/openapi.json`, which the server builds from the one
declaration of the training config (gan/config.py). Walked here: each declared field has a
control named by its HTTP name, labelled with its declared label, hinted with its help,
starting at its default, offering its choices, and placed before or under "More settings"
as declared. One uvicorn API (SQLite, the session's Redis), no worker: nothing is trained.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ganserve.gan.config import CONFIG_FIELDS, ConfigField
from tests.browser.conftest import APP, ROOT, PageErrors, browser_missing, expect
from tests.helpers.processes import free_port, start_uvicorn


@dataclass
class FormStack:
    url: str


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[FormStack]:
    """Overrides conftest's stack (API, keyed API, worker) with one API: the form needs no more."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("train-form")
    env = {
        "GANSERVE_DATA_DIR": str(root / "data"),
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{root / 'ganserve.db'}",
        "GANSERVE_TRAINING_QUEUE": f"ganserve-form-{root.name}",
        "GANSERVE_API_KEYS": "",
    }
    port = free_port()
    api = start_uvicorn(
        APP, port, env, root / "api.log", factory=True, ready_path="/readyz", cwd=ROOT
    )
    try:
        yield FormStack(f"http://127.0.0.1:{port}")
    finally:
        api.stop()


def control_id(declared: ConfigField) -> str:
    return "#f-" + declared.api_name.replace(".", "-")


def test_the_form_shows_every_declared_field(
    web_stack: FormStack, page: tuple[Any, PageErrors]
) -> None:
    tab, errors = page
    tab.goto(f"{web_stack.url}/#/submit")
    tab.wait_for_selector("#f-steps")
    assert tab.locator("#f-name").count() == 1  # the spec's own field first
    for declared in CONFIG_FIELDS:
        control = tab.locator(control_id(declared))
        assert control.count() == 1, declared.api_name
        assert control.get_attribute("name") == declared.api_name
        block = tab.locator(f'[data-field="{declared.api_name}"]')
        expect(block.locator("label")).to_have_text(declared.label)
        hint = block.locator(".hint").text_content() or ""
        assert hint.startswith(declared.help), (declared.api_name, hint)
        inside_more = tab.locator(f"#advanced {control_id(declared)}").count() == 1
        assert inside_more != declared.basic, declared.api_name
        if declared.type is bool:
            assert control.is_checked() == declared.default, declared.api_name
        elif declared.type in (int, float) and declared.default is not None:
            assert float(control.input_value()) == declared.default, declared.api_name
        else:  # an optional field without a default starts empty (and is not sent)
            expected = "" if declared.default is None else declared.default
            assert control.input_value() == expected, declared.api_name
        if declared.choices:
            options = control.locator("option").all_text_contents()
            assert options == list(declared.choices), declared.api_name
    # the labels are the declaration's, so a person finds fields by them
    tab.get_by_text("More settings").click()
    tab.get_by_label("Gradient penalty weight").fill("2.5")
    tab.get_by_label("Adam β1").fill("0.9")
    with tab.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as info:
        tab.locator("#submit-button").click()
    body = info.value.post_data
    sent = json.loads(body)
    assert sent["gp_lambda"] == 2.5 and sent["betas"] == [0.9, 0.999]
    assert sent["noise"] == {"dim": 100, "distribution": "normal"}
    assert "mode_seeking" not in sent  # an optional number left empty: the server's default
    errors.check()
