"""Screenshot a family's demo Space in headless Chromium: give it the first example (a file for image and audio
Spaces, text for text Spaces), submit, wait until every variant answered, and save the page.

    python benchmarks/space_screenshot.py MODEL OUT.png [--registry registry.yaml]

Run it after ``zoo push MODEL``: it serves the Space with ``zoo demo`` (variants loaded from the embedded hub over
HTTP, as a user would) and browses it. Needs Debian's chromium (/usr/bin/chromium) and the playwright package; the
demo's own output goes to OUT.log.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_app(url: str, proc: subprocess.Popen, log: Path, seconds: float = 900) -> None:
    """Until the page answers: zoo demo binds its port before the variants are loaded."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the demo exited; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the demo did not answer on {url} within {seconds:.0f} s; see {log}")


def give_example(page, folder: Path, config: dict) -> str:
    """Put the Space's first example into its input; return what was given."""
    examples = config.get("examples") or []
    if examples and isinstance(examples[0], dict) and "file" in examples[0]:
        upload = page.locator("#zoo-input input[type=file]")
        if upload.count() == 0:  # an audio input shows the microphone first: switch it to upload
            page.locator("#zoo-input").get_by_label("Upload file").first.click()
        page.locator("#zoo-input input[type=file]").first.set_input_files(str(folder / examples[0]["file"]))
        return examples[0]["file"]
    texts = json.loads((folder / "examples.json").read_text())
    first = texts[0] if isinstance(texts[0], str) else texts[0][0]
    page.locator("#zoo-input textarea").first.fill(first)
    return first


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import expect, sync_playwright

    from zoo import registry
    from zoo.store import Store

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out", type=Path)
    ap.add_argument("--registry", type=Path, default=Path("registry.yaml"))
    args = ap.parse_args(argv)
    loaded = registry.load(args.registry)
    store = Store.for_registry(loaded.path)
    folder = store.space(args.model)
    config = json.loads((folder / "variants.json").read_text())
    port = free_port()
    log = args.out.with_suffix(".log")
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "zoo", "demo", args.model, "--registry", str(args.registry),
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_app(url, proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(url)
            given = give_example(page, folder, config)
            time.sleep(3)
            start = time.monotonic()
            page.locator("#zoo-submit").click()
            summary = page.locator("#zoo-summary")
            for spec in config["variants"]:
                expect(summary).to_contain_text(spec["variant"], timeout=300_000)
            expect(page.get_by_text("processing |")).to_have_count(0, timeout=300_000)
            took = time.monotonic() - start
            time.sleep(2)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"{args.model}: gave {given!r}, every variant answered in {took:.1f} s; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
