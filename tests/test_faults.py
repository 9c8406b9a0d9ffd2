"""Interrupted and concurrent work: a killed build leaves nothing that looks complete, and two runs serialise."""

from __future__ import annotations

import hashlib
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


PUSH_SCRIPT = """
import sys
from pathlib import Path
from zoo.hub import ops
from zoo.hub.hf import HfHub
from zoo.hub.server import HubServer

with HubServer(Path(sys.argv[1])) as server:  # the embedded hub, killed with this process
    hub = HfHub(server.token, endpoint=server.url, name="local")
    hub.create_repo("org/big", "model")
    plan = ops.plan(Path(sys.argv[2]), hub.files("org/big", "model"))
    if not plan.empty:
        hub.commit("org/big", "model", plan.operations, "push", hub.head("org/big", "model"))
print("pushed")
"""


def _hub_consistent(root: Path) -> str | None:
    """The head commit, after checking that it and every file it names are complete; None if no commit yet."""
    repo = root / "repos" / "models" / "org" / "big"
    ref = repo / "refs" / "heads" / "main"
    if not ref.is_file():
        return None
    head = ref.read_text().strip()
    record = json.loads((repo / "commits" / f"{head}.json").read_text())
    for path, f in record["files"].items():
        obj = root / "objects" / f["sha256"][:2] / f["sha256"]
        assert obj.is_file(), f"{path}: object missing"
        assert hashlib.sha256(obj.read_bytes()).hexdigest() == f["sha256"], f"{path}: object corrupt"
    return head


def test_sigkill_mid_push_never_leaves_a_broken_repo(tmp_path):
    staged = tmp_path / "staged"
    staged.mkdir()
    rng = random.Random(2)
    for i in range(24):
        (staged / f"shard-{i:02d}.bin").write_bytes(rng.randbytes(1 << 21))
    hub_root = tmp_path / "hub"
    script = tmp_path / "push.py"
    script.write_text(PUSH_SCRIPT)
    for _trial in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(hub_root), str(staged)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _hub_consistent(hub_root)  # a ref, if any, points at a whole commit
    done = subprocess.run([sys.executable, str(script), str(hub_root), str(staged)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    head = _hub_consistent(hub_root)
    record = json.loads((hub_root / "repos/models/org/big/commits" / f"{head}.json").read_text())
    assert sorted(record["files"]) == sorted(p.name for p in staged.iterdir())
    again = subprocess.run([sys.executable, str(script), str(hub_root), str(staged)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and _hub_consistent(hub_root) == head, "a re-push of the same files made a commit"


def test_full_disk_mid_build_is_one_line_and_keeps_nothing(tiny_zoo, monkeypatch):
    import errno

    from typer.testing import CliRunner

    from zoo.cli import app
    from zoo.families.text_classification.techniques import Finetune

    def full(self, ctx):
        (ctx.out_dir / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.out_dir / "model.safetensors"))

    monkeypatch.setattr(Finetune, "build", full)
    monkeypatch.chdir(tiny_zoo.parent)
    result = CliRunner().invoke(app, ["build", "tiny-sentiment:fp32"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("disk full while writing ") and "run the same command again" in lines[-1]
    assert "Traceback" not in result.output
    assert _artifact_state(tiny_zoo.parent) == {}, "the half-written artifact was kept"


def test_ctrl_c_mid_build_is_one_line_and_keeps_nothing(tiny_zoo, monkeypatch):
    from typer.testing import CliRunner

    from zoo.cli import app
    from zoo.families.text_classification.techniques import Finetune

    def interrupted(self, ctx):
        (ctx.out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(Finetune, "build", interrupted)
    monkeypatch.chdir(tiny_zoo.parent)
    result = CliRunner().invoke(app, ["build", "tiny-sentiment:fp32"])
    assert result.exit_code == 130
    assert "interrupted: nothing half-written was kept" in result.stderr
    assert _artifact_state(tiny_zoo.parent) == {}


def test_trust_remote_code_reaches_from_pretrained_only_when_declared(tiny_zoo, monkeypatch):
    """Off by default; a registry entry that says `trust_remote_code: true` is passed on (and shown in the plan)."""
    import transformers

    from zoo import build

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        raise KeyboardInterrupt  # stop right after the load is asked for

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", spy)
    for declared in (False, True):
        if declared:
            tiny_zoo.write_text(tiny_zoo.read_text().replace(
                "    license: apache-2.0\n", "    license: apache-2.0\n    trust_remote_code: true\n"))
        loaded = registry.load(tiny_zoo)
        nodes = plan.select(plan.make(loaded), [("tiny-sentiment", "fp32")])
        with pytest.raises(KeyboardInterrupt):
            build.build(loaded, Store.for_registry(loaded.path), nodes, log=lambda *_: None)
    assert seen == [False, True]
