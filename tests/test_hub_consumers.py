"""Consumers of the embedded hub, unchanged: with ``HF_ENDPOINT`` pointing at it, every card's usage snippet runs as
written (``from_pretrained("testorg/...")``, ``snapshot_download``, ``PeftModel.from_pretrained``), in a fresh
process as a user would run it; the Space's README and requirements install on Spaces.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from test_card import MODEL, ORG, RELATIONS, published  # noqa: F401  (the shared, session-wide published project)

from zoo import registry
from zoo.hub.server import HubServer
from zoo.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(published):  # noqa: F811
    loaded = registry.load(published)
    store = Store.for_registry(loaded.path)
    with HubServer(store.hub) as server:
        yield loaded, store, server


@pytest.mark.parametrize("repo", [*RELATIONS, "qlora-4bit-adapter"])
def test_every_card_snippet_runs_unchanged_with_hf_endpoint(served, repo, tmp_path):
    loaded, store, server = served
    text = (store.repo(MODEL, repo) / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks and any(f'"{ORG}/' in b for b in blocks), "the card has no snippet loading by repo id"
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": server.token, "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONWARNINGS": "ignore"}
    labels = loaded.model(MODEL).dataset.labels
    for i, code in enumerate(blocks):
        # cwd: a `file:` base is named relative to the project, as in registry.yaml
        proc = subprocess.run([sys.executable, "-c", code], cwd=loaded.root, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"snippet {i} of {repo}:\n{code}\n{proc.stderr[-3000:]}"
        assert all(label in proc.stdout for label in labels), proc.stdout
    assert server.requests[f"model:{ORG}/{MODEL}-{repo}"] > 0  # it really came over HTTP


def test_the_space_names_its_python_and_installs_torch_from_the_cpu_index(served):
    _, store, _ = served
    space = store.space(MODEL)
    front = yaml.safe_load((space / "README.md").read_text().split("---")[1])
    assert front["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert tuple(int(x) for x in front["python_version"].split(".")) >= (3, 11)  # what the pinned wheels need
    lines = (space / "requirements.txt").read_text().splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert [x for x in lines if x.startswith("torch==")][0].endswith("+cpu")
    app = (space / "app.py").read_text()
    assert "def resolve" not in app and "ZOO_LOCAL_HUB" not in app and "token=TOKEN" in app
