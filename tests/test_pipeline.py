"""`zoo run` end to end on the tiny zoo: nothing → pushed, pullable variants; a second run does nothing; no token
leaks into any file or log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import plan, registry
from zoo.hub.hf import HfHub
from zoo.hub.server import HubServer
from zoo.store import Store

pytestmark = pytest.mark.slow
FAKE_TOKEN = "hf_" + "FakeTokenForLeakScan" + "x" * 16


def _zoo(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_TOKEN": FAKE_TOKEN, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=1200)


def _heads(hub: HfHub, repo_ids: list[str]) -> dict[str, str | None]:
    return {r: hub.head(r) for r in repo_ids}


def test_run_from_nothing_to_pushed_then_noop(tiny_zoo, tmp_path):
    project = tiny_zoo.parent
    first = _zoo(project, "run")
    assert first.returncode == 0, first.stderr[-3000:]
    loaded = registry.load(tiny_zoo)
    store = Store.for_registry(loaded.path)
    server = HubServer(store.hub).start()  # read what `zoo run` published, over HTTP
    hub = HfHub(server.token, endpoint=server.url, name="local")
    nodes = plan.make(loaded)
    repos = [f"testorg/tiny-sentiment-{n.variant_id}" for n in nodes] + ["testorg/tiny-sentiment-qlora-4bit-adapter"]
    heads = _heads(hub, repos)
    assert all(heads.values()), heads
    assert hub.head("testorg/tiny-sentiment-demo", "space")

    second = _zoo(project, "run")
    assert second.returncode == 0, second.stderr[-3000:]
    assert _heads(hub, repos) == heads, "a second run made new commits"
    assert "built" not in [line.split()[1] for line in second.stdout.splitlines()
                           if line.startswith("tiny-sentiment:") and len(line.split()) > 1]

    pulled = _zoo(project, "pull", "tiny-sentiment", "--variant", "int8", "--dest", str(tmp_path / "int8"))
    assert pulled.returncode == 0, pulled.stderr
    assert "ort.InferenceSession(" in pulled.stdout
    from zoo.families.text_classification.loaders import load_classifier

    assert load_classifier(tmp_path / "int8").runtime == "onnxruntime"

    for proc in (first, second, pulled):
        assert FAKE_TOKEN not in proc.stdout + proc.stderr
    leaks = [p for p in project.rglob("*") if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]
    assert leaks == [], f"the token was written to {leaks}"
    provenance = json.loads((store.artifact(nodes[0].hash) / "provenance.json").read_text())
    assert "HF_TOKEN" not in json.dumps(provenance)
