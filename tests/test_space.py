"""The demo Space of the tiny family: its README front matter, its pinned requirements, and the app itself,
started in a subprocess on the local hub and driven with gradio_client."""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard
from test_card import MODEL, published  # noqa: F401  (the shared, session-wide published project)

from zoo import ids, plan, registry, space
from zoo.errors import ZooError
from zoo.families import family_of
from zoo.status import gate_passed, read_results
from zoo.store import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(space_dir: Path, hub: Path, log: Path, timeout: float = 240) -> tuple[subprocess.Popen, str]:
    """Run the Space's app.py on a free 127.0.0.1 port, loading its variants over HTTP from the embedded hub over
    ``hub`` (HF_ENDPOINT, as on a Space); return once it answers HTTP. ``stop_app`` stops both."""
    import urllib.request

    from zoo.hub.server import HubServer

    server = HubServer(hub).start()
    port = free_port()
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": server.token, "HF_HUB_OFFLINE": "0",
           "HF_HUB_CACHE": str(log.parent / "hf-cache"), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    out = open(log, "w")  # noqa: SIM115  (the child writes to it until it is stopped)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.hub_server = server  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise AssertionError(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    server.stop()
    raise AssertionError(f"the app did not answer on {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    server = getattr(proc, "hub_server", None)
    if server is not None:
        server.stop()


@pytest.fixture(scope="module")
def app(published, tmp_path_factory) -> Iterator[tuple[str, dict]]:  # noqa: F811
    loaded = registry.load(published)
    store = Store.for_registry(loaded.path)
    folder = store.space(MODEL)
    proc, url = start_app(folder, store.hub, tmp_path_factory.mktemp("app") / "app.log")
    try:
        yield url, json.loads((folder / "variants.json").read_text())
    finally:
        stop_app(proc)


def test_readme_front_matter_and_pinned_requirements(published):  # noqa: F811
    import gradio

    loaded = registry.load(published)
    store = Store.for_registry(loaded.path)
    folder = store.space(MODEL)
    data = SpaceCard.load(folder / "README.md").data.to_dict()
    passed = [n.variant_id for n in plan.make(loaded) if gate_passed(read_results(store, n))]
    assert passed, "no tiny variant passed its gate"

    assert data["sdk"] == "gradio"
    assert data["sdk_version"] == gradio.__version__ == "6.31.0"
    assert data["app_file"] == "app.py" and (folder / "app.py").is_file()
    assert data["license"] == "apache-2.0"
    assert data["models"] == [ids.repo_id("testorg", MODEL, v) for v in passed]
    lines = (folder / "requirements.txt").read_text().splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines  # a CPU Space gets the CPU torch build
    pins = dict(line.split("==") for line in lines if line and not line.startswith(("#", "--")))
    assert pins["torch"].endswith("+cpu")
    pins["torch"] = pins["torch"].removesuffix("+cpu")
    assert pins["gradio"] == data["sdk_version"]
    assert {"torch", "transformers", "huggingface_hub", "onnxruntime"} <= set(pins) and "optimum" not in pins
    assert all(re.fullmatch(r"\d+(\.\d+)+", v) for v in pins.values()), pins
    table = json.loads((folder / "table.json").read_text())
    assert [r["variant"] for r in table["rows"]] == list(loaded.model(MODEL).variants)
    examples = json.loads((folder / "examples.json").read_text())
    examples = family_of("text-classification").examples(loaded.model(MODEL), loaded.root, "d", 10_000)
    test_texts = {" ".join(t.split()) for t in examples}
    assert examples and set(examples) <= test_texts


def test_app_is_standalone():
    tree = ast.parse((family_of("text-classification").folder / "space" / "app.py").read_text())
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert "zoo" not in imported


def test_render_refuses_a_family_with_nothing_evaluated(tiny_zoo):
    loaded = registry.load(tiny_zoo)
    with pytest.raises(ZooError, match=r"tiny-sentiment: no variant is built, evaluated and passing its gate"):
        space.render(loaded, Store.for_registry(loaded.path), MODEL)


@pytest.mark.slow
def test_every_variant_answers_through_gradio_client(app):
    from gradio_client import Client

    url, config = app
    client = Client(url, verbose=False)
    summary, *labels = client.predict("a lovely and moving film", api_name="/classify")
    names = [v["variant"] for v in config["variants"]]
    assert [row[0] for row in summary["data"]] == names
    for row, out, spec in zip(summary["data"], labels, config["variants"], strict=True):
        assert row[2] in spec["label_names"] and 0 <= row[3] <= 1 and row[4] > 0
        assert out["label"] == row[2]
        assert sum(c["confidence"] for c in out["confidences"]) == pytest.approx(1, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(("text", "message"), [("   ", "Type a text"), ("x" * 1001, "the limit is 1000")])
def test_bad_input_is_an_error_in_the_ui(app, text, message):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app[0], verbose=False)
    with pytest.raises(AppError, match=message):
        client.predict(text, api_name="/classify")

