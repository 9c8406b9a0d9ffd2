from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import make_tiny_zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["family_fixtures"]


@pytest.fixture(autouse=True)
def isolated_hf(tmp_path_factory, monkeypatch):
    """No test sees a real token or the user's Hugging Face cache, and none reaches the Hub."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("ZOO_HOME", raising=False)
    monkeypatch.delenv("ZOO_HUB", raising=False)
    monkeypatch.delenv("ZOO_LOCAL_HUB", raising=False)
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)


@pytest.fixture
def plugin_families(monkeypatch):
    """Family folders a test loads stay registered for that test only (the registries are process-wide)."""
    import sys

    from zoo.families import FAMILIES
    from zoo.techniques import TECHNIQUES

    monkeypatch.setenv("ZOO_FAMILIES", "")  # load_plugin exports its folders for child processes
    FAMILIES.tasks()
    TECHNIQUES.names()  # both registries complete before the snapshot
    families, techniques = dict(FAMILIES._by_task), dict(TECHNIQUES._items)
    yield
    FAMILIES._by_task.clear()
    FAMILIES._by_task.update(families)
    TECHNIQUES._items.clear()
    TECHNIQUES._items.update(techniques)
    for name in [m for m in sys.modules if m.startswith("zoo_family_")]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def _tiny_zoo_template(tmp_path_factory) -> Path:
    return make_tiny_zoo(tmp_path_factory.mktemp("tiny-zoo-template")).parent


@pytest.fixture
def tiny_zoo(_tiny_zoo_template, tmp_path) -> Path:
    """A fresh copy of the tiny project; returns its registry.yaml path. Its store is <project>/.zoo."""
    dest = tmp_path / "project"
    shutil.copytree(_tiny_zoo_template, dest, ignore=shutil.ignore_patterns(".zoo"))
    return dest / "registry.yaml"


@pytest.fixture(scope="session")
def built_tiny_zoo(tmp_path_factory, _tiny_zoo_template) -> Path:
    """The tiny project with every variant built once per session (shared, read-only for tests)."""
    from zoo import build, plan, registry
    from zoo.store import Store

    dest = tmp_path_factory.mktemp("built") / "project"
    shutil.copytree(_tiny_zoo_template, dest)
    loaded = registry.load(dest / "registry.yaml")
    build.build(loaded, Store.for_registry(loaded.path), plan.make(loaded), log=lambda *_: None)
    return dest / "registry.yaml"


def pytest_collection_modifyitems(config, items):
    skip_hub = pytest.mark.skip(reason="needs HF_TOKEN (real Hugging Face Hub)")
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    has_token = bool(os.environ.get("HF_TOKEN"))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    for item in items:
        if "hub" in item.keywords and not has_token:
            item.add_marker(skip_hub)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
