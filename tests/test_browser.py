"""The demo Space in a real browser (Debian's chromium through Playwright): type, submit, see every variant."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_card import MODEL, published  # noqa: F401  (the shared, session-wide published project)
from test_space import start_app, stop_app

from zoo import registry
from zoo.store import Store

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                      "(apt-get install -y chromium)"),
]


def test_typing_and_submitting_shows_every_variant(published, tmp_path):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install)")
    loaded = registry.load(published)
    store = Store.for_registry(loaded.path)
    folder = store.space(MODEL)
    config = json.loads((folder / "variants.json").read_text())
    labels = loaded.model(MODEL).dataset.labels
    proc, url = start_app(folder, store.hub, tmp_path / "app.log")
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("#zoo-submit").click()  # nothing typed: the app's validation shows in the page
            sync_api.expect(page.get_by_text("Type a text to classify first.").first).to_be_visible(timeout=30_000)
            page.reload()
            page.locator("#zoo-input textarea").fill("a lovely and moving film")
            page.locator("#zoo-submit").click()
            for spec in config["variants"]:
                out = page.locator(f"#zoo-out-{spec['variant']}")
                sync_api.expect(out).to_contain_text(labels[0], timeout=60_000)
                sync_api.expect(out).to_contain_text(labels[1], timeout=60_000)
            summary = page.locator("#zoo-summary")
            for spec in config["variants"]:
                sync_api.expect(summary).to_contain_text(spec["variant"], timeout=10_000)
            sync_api.expect(page.get_by_text("processing |")).to_have_count(0, timeout=30_000)
            shot = Path(os.environ.get("ZOO_DEMO_SCREENSHOT", tmp_path / "demo.png"))
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert shot.stat().st_size > 10_000
    finally:
        stop_app(proc)
