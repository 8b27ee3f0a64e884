"""The CycleGAN translate view in Chromium: upload a picture, see both translations and the
reconstructions, from a translator registered straight into the stack's store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ganserve.gan.translation.models import ResnetGenerator, TranslatorSpec
from ganserve.gan.translation.translate import export_translator
from ganserve.settings import Settings
from ganserve.store import Store, jobs, registry
from tests.browser.conftest import PageErrors, WebStack, expect

SPEC = TranslatorSpec(channels=3, image_size=16, width=4, blocks=1, d_width=4, d_layers=1,
                      domain_a="digits", domain_b="digits-on-colour")  # fmt: skip


def _register(stack: WebStack, name: str) -> None:
    settings = Settings(data_dir=stack.data_dir, database_url=stack.env["DATABASE_URL"])
    store = Store.from_settings(settings)
    try:
        with store.session() as session:
            job = jobs.create_job(session, name, {"name": name}, total_steps=1)
            folder = store.artifacts.job_dir(job.id) / "generator"
            torch.manual_seed(0)
            description = export_translator(
                ResnetGenerator(SPEC), ResnetGenerator(SPEC), folder, {"step": 1}
            )
            registry.register_version(
                session, name, job.id, 1, store.artifacts.relative(folder), description
            )
    finally:
        store.close()


def test_translate_a_picture_both_ways_in_the_browser(
    web_stack: WebStack, page: tuple[Any, PageErrors], artifacts: Path, tmp_path: Path
) -> None:
    _register(web_stack, "zebra")
    tab, errors = page
    tab.goto(f"{web_stack.url}/#/models")
    expect(tab.get_by_text("translates digits ↔ digits-on-colour")).to_be_visible()
    tab.goto(f"{web_stack.url}/#/models/zebra")
    tab.wait_for_selector("#t-file")
    picture = tmp_path / "seven.png"
    Image.new("L", (40, 24), 200).save(picture)
    tab.get_by_label("Picture (PNG or JPEG)").set_input_files(str(picture))
    expect(tab.locator("#translate-grid")).to_have_attribute("data-state", "loaded")
    for image in ("t-input", "t-a2b", "t-a2b-back", "t-b2a", "t-b2a-back"):
        width = tab.eval_on_selector(f"#{image}", "img => img.naturalWidth")
        assert width == (40 if image == "t-input" else 16), image
    expect(tab.locator("#t-status")).to_contain_text("zebra v1")
    tab.get_by_label("Keep its size").check()
    expect(tab.locator("#translate-grid")).to_have_attribute("data-state", "loaded")
    expect(tab.locator("#t-a2b")).to_have_js_property("naturalWidth", 40)
    tab.screenshot(path=str(artifacts / "translate-view.png"), full_page=True)
    # a file that is not an image: the server's problem, shown by the form
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"hello")
    tab.get_by_label("Picture (PNG or JPEG)").set_input_files(str(bad))
    expect(tab.locator("#t-error")).to_contain_text("not a readable PNG or JPEG")
    errors.check()
