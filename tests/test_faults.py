"""Interrupted and concurrent work: a killed build leaves nothing that looks complete, and two runs serialise."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zoo import plan, registry
from zoo.store import Store

pytestmark = pytest.mark.slow


def _zoo(project: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "zoo", *args], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _artifact_state(project: Path) -> dict[str, str]:
    """Each artifact folder in the store: 'complete' if it has provenance.json, else what it is."""
    arts = project / ".zoo" / "artifacts"
    if not arts.exists():
        return {}
    return {p.name: ("complete" if (p / "provenance.json").is_file() else "incomplete")
            for p in arts.iterdir() if p.is_dir()}


def _files(store: Store, h: str) -> dict[str, str]:
    return json.loads((store.artifact(h) / "provenance.json").read_text())["files"]


def test_sigkill_mid_build_never_leaves_a_complete_looking_half_artifact(tiny_zoo):
    project = tiny_zoo.parent
    loaded = registry.load(tiny_zoo)
    store = Store.for_registry(loaded.path)
    nodes = {n.variant_id: n for n in plan.make(loaded)}
    rng = random.Random(1)
    for trial in range(3):
        proc = _zoo(project, "build", "tiny-sentiment:int8")
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for name, state in _artifact_state(project).items():
            # only the final names count as artifacts; temp folders are '.tmp-*' and never complete
            if not name.startswith(".tmp-"):
                assert state == "complete", f"trial {trial}: {name} is a half artifact under its final name"
            assert not (name.startswith(".tmp-") and state == "complete" and store.is_built(name))
    done = _zoo(project, "build", "tiny-sentiment:int8")
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    for v in ("fp32", "int8"):
        assert store.is_built(nodes[v].hash)
    assert not list((project / ".zoo" / "artifacts").glob(".tmp-*")), "temp folders of killed runs were cleaned"
    # the resumed build is the same as a clean one: same plan hash and same file contents
    clean = tiny_zoo.parent.parent / "clean"
    clean.mkdir()
    for item in ("registry.yaml", "recipes", "assets"):
        src = project / item
        subprocess.run(["cp", "-r", str(src), str(clean / item)], check=True)
    ref = _zoo(clean, "build", "tiny-sentiment:fp32")
    assert ref.wait(timeout=600) == 0
    assert _files(Store(clean / ".zoo"), nodes["fp32"].hash) == _files(store, nodes["fp32"].hash)


def test_two_builds_serialise_on_the_store_lock(tiny_zoo):
    project = tiny_zoo.parent
    first = _zoo(project, "build", "tiny-sentiment:fp32")
    time.sleep(2.5)
    second = _zoo(project, "build", "tiny-sentiment:fp32")
    out1, err1 = first.communicate(timeout=600)
    out2, err2 = second.communicate(timeout=600)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert f"waiting for lock held by PID {first.pid}" in err2
    assert "built" in out1 and "skipped" in out2
