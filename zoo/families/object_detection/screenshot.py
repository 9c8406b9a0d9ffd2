"""Screenshot the family's Space in headless chromium: pick an example, detect, wait for every variant's boxes.

``python -m zoo.families.object_detection.screenshot MODEL OUT.png`` (after ``zoo space`` and ``zoo push``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main(model: str, out: str, registry_path: str = "registry.yaml") -> None:
    from playwright.sync_api import expect, sync_playwright

    from zoo import registry
    from zoo.store import Store

    loaded = registry.load(registry_path)
    store = Store.for_registry(loaded.path)
    folder = store.space(model)
    config = json.loads((folder / "variants.json").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ZOO_LOCAL_HUB": str(store.hub), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(Path(out).with_suffix(".log"), "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"the app exited; see {log.name}") from None
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(url)
            example = folder / config["examples"][0]["file"]
            page.locator("#zoo-input input[type=file]").set_input_files(str(example))
            time.sleep(3)
            page.locator("#zoo-submit").click()
            summary = page.locator("#zoo-summary")
            for spec in config["variants"]:
                expect(summary).to_contain_text(spec["variant"], timeout=180_000)
            expect(page.get_by_text("processing |")).to_have_count(0, timeout=120_000)
            time.sleep(2)
            page.screenshot(path=out, full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"written: {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
