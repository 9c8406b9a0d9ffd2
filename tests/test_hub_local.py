"""The embedded local hub end to end: push → pull → load → re-push makes no commit; tags, revisions, refusals."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd
from rich.console import Console
from typer.testing import CliRunner

from zoo import hub, ids, plan, registry
from zoo.cli import app
from zoo.errors import UsageError, ZooError
from zoo.hub.local import LocalHub, repo_dir
from zoo.store import Store, write_json

ORG, MODEL = "testorg", "tiny-sentiment"


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    """A tiny BERT sequence classifier saved with save_pretrained (config + safetensors + tokenizer)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path = tmp_path_factory.mktemp("classifier")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(path)  # transformers 5: no vocab_file
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=16, id2label={0: "rotten", 1: "fresh"},
                     label2id={"rotten": 0, "fresh": 1})
    BertForSequenceClassification(cfg).save_pretrained(path)
    return path


class Project:
    """The tiny project with results and staged repos written by hand, as eval and card would write them."""

    def __init__(self, registry_path: Path, version: str | None = "1.0.0", gated: bool = False):
        text = registry_path.read_text()
        if version:
            text = f'version: "{version}"\n' + text
        if gated:
            text = text.replace("    task: text-classification\n", "    task: text-classification\n    gated: true\n")
        registry_path.write_text(text)
        self.path = registry_path
        self.loaded = registry.load(registry_path)
        self.store = Store.for_registry(self.loaded.path)
        self.model = next(iter(self.loaded.registry.models))
        self.nodes = {n.variant_id: n for n in plan.make(self.loaded)}
        self.out = io.StringIO()
        self.console = Console(file=self.out, width=200)

    def evaluate(self, variant: str, accuracy: float = 0.9, passed: bool = True, p50: float = 1.0) -> None:
        node = self.nodes[variant]
        write_json(self.store.results(node.hash), {
            "model": self.model, "variant": variant, "kind": node.kind, "hash": node.hash,
            "metrics": {"accuracy": accuracy, "f1": accuracy},
            "gate": {"metric": "accuracy", "of": "fp32", "value": accuracy, "reference": 0.9,
                     "ratio": accuracy / 0.9, "min_ratio": 0.9, "passed": passed},
            "perf": {"latency_ms": {"batch_1": {"p50": p50, "p95": p50 * 2}}}})

    def stage(self, variant: str, files: dict[str, bytes] | None = None, model_dir: Path | None = None,
              fmt: str = "transformers") -> Path:
        node = self.nodes[variant]
        folder = self.store.repo(self.model, variant)
        folder.mkdir(parents=True, exist_ok=True)
        if model_dir is not None:
            for f in model_dir.iterdir():
                (folder / f.name).write_bytes(f.read_bytes())
        for rel, data in (files or {}).items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        (folder / "README.md").write_text(f"# {variant}\n")
        (folder / "provenance.json").write_text(json.dumps({"format": fmt}))
        (folder / "results.json").write_bytes(self.store.results(node.hash).read_bytes())
        return folder

    def ready(self, variant: str, **kw) -> Path:
        self.evaluate(variant)
        return self.stage(variant, **kw)

    def push(self, *variants: str, **kw):
        return hub.push(self.loaded, self.store, [self.nodes[v] for v in variants], console=self.console, **kw)

    def repo(self, variant: str) -> Path:
        return repo_dir(self.store.hub, ids.repo_id(self.loaded.registry.org, self.model, variant))

    @property
    def local(self) -> LocalHub:
        return LocalHub(self.store.hub)


@pytest.fixture
def project(tiny_zoo) -> Project:
    return Project(tiny_zoo)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_push_writes_the_layout_and_a_second_push_makes_no_commit(project):
    folder = project.ready("int8", files={"model.onnx": b"graph-v1", "onnx/config.json": b"{}"}, fmt="onnx")
    [row] = project.push("int8")
    repo = project.repo("int8")
    head = (repo / "refs/heads/main").read_text().strip()
    assert row.commit == head and len(head) == 40 and row.added == 5 and row.deleted == 0
    record = json.loads((repo / "commits" / f"{head}.json").read_text())
    assert record["id"] == head and record["parent"] is None and "registry 1.0.0" in record["message"]
    expected = {p.relative_to(folder).as_posix(): sha256(p) for p in folder.rglob("*") if p.is_file()}
    assert record["files"] == expected
    for rel, digest in expected.items():
        obj, snap = repo / "objects" / digest, repo / "snapshots" / head / rel
        assert sha256(obj) == digest
        assert os.stat(obj).st_ino == os.stat(snap).st_ino  # hard link into objects/
    assert (repo / "refs/tags/1.0.0").read_text().strip() == head
    assert json.loads((project.store.hub / "collections" / ORG / f"{MODEL}.json").read_text())["items"] == [
        {"item_id": f"{ORG}/{MODEL}-int8", "item_type": "model"}]

    [again] = project.push("int8")
    assert again.commit is None and again.added == again.deleted == 0
    assert (repo / "refs/heads/main").read_text().strip() == head
    assert len(list((repo / "commits").glob("*.json"))) == 1
    assert "no change" in project.out.getvalue()


def test_a_changed_file_makes_a_commit_with_only_that_file(project):
    folder = project.ready("int8", files={"model.onnx": b"graph-v1", "extra.txt": b"old"}, fmt="onnx")
    [first] = project.push("int8")
    (folder / "model.onnx").write_bytes(b"graph-v2")
    (folder / "extra.txt").unlink()
    [second] = project.push("int8")
    assert (second.added, second.deleted) == (1, 1) and second.commit != first.commit
    repo = project.repo("int8")
    old = json.loads((repo / "commits" / f"{first.commit}.json").read_text())["files"]
    new = json.loads((repo / "commits" / f"{second.commit}.json").read_text())
    assert new["parent"] == first.commit
    changed = {p for p in old.keys() | new["files"].keys() if old.get(p) != new["files"].get(p)}
    assert changed == {"model.onnx", "extra.txt"} and "extra.txt" not in new["files"]
    assert (repo / "snapshots" / second.commit / "model.onnx").read_bytes() == b"graph-v2"
    assert (repo / "snapshots" / first.commit / "model.onnx").read_bytes() == b"graph-v1"
    assert second.tagged is None  # the 1.0.0 tag stays on the first commit
    assert project.local.resolve(f"{ORG}/{MODEL}-int8", "model", "1.0.0") == first.commit


def test_pull_gives_the_same_files_and_from_pretrained_loads_them(project, tiny_classifier, tmp_path):
    from transformers import AutoModelForSequenceClassification

    folder = project.ready("fp32", model_dir=tiny_classifier)
    project.push("fp32")
    dest = hub.pull(project.loaded, project.store, MODEL, variant="fp32", dest=tmp_path / "pulled",
                    console=project.console)
    pulled = {p.relative_to(dest).as_posix(): sha256(p) for p in dest.rglob("*") if p.is_file()}
    assert pulled == {p.relative_to(folder).as_posix(): sha256(p) for p in folder.rglob("*") if p.is_file()}
    model = AutoModelForSequenceClassification.from_pretrained(dest)
    assert model.config.id2label == {0: "rotten", 1: "fresh"}
    out = project.out.getvalue()
    assert "from transformers import AutoModelForSequenceClassification" in out
    assert f'AutoModelForSequenceClassification.from_pretrained("{dest}")' in out
    (dest / "config.json").write_text("{}")  # a pulled file is a copy: editing it leaves the hub alone
    assert project.local.read_file(f"{ORG}/{MODEL}-fp32", "model", "config.json") != b"{}"


def test_revisions_resolve_by_branch_tag_commit_and_prefix(project, tmp_path):
    folder = project.ready("int8", files={"model.onnx": b"v1"}, fmt="onnx")
    [first] = project.push("int8")
    (folder / "model.onnx").write_bytes(b"v2")
    [second] = project.push("int8")
    rid = f"{ORG}/{MODEL}-int8"
    local = project.local
    assert local.resolve(rid) == local.resolve(rid, "model", "main") == second.commit
    assert local.resolve(rid, "model", "1.0.0") == first.commit
    assert local.resolve(rid, "model", first.commit) == first.commit
    assert local.resolve(rid, "model", first.commit[:8]) == first.commit
    with pytest.raises(ZooError, match=r"no branch, tag or commit 'nope' \(branches: main; tags: 1.0.0\)"):
        local.resolve(rid, "model", "nope")
    dest = hub.pull(project.loaded, project.store, MODEL, variant="int8", revision="1.0.0", dest=tmp_path / "old",
                    console=project.console)
    assert (dest / "model.onnx").read_bytes() == b"v1"
    assert 'ORTModelForSequenceClassification.from_pretrained(' in project.out.getvalue()
    assert local.tag(rid, "model", "1.0.0", second.commit) is False  # an existing tag is left alone
    assert local.tag(rid, "model", "later", second.commit) is True
    assert local.resolve(rid, "model", "later") == second.commit


def test_a_stale_parent_commit_is_refused(project):
    project.ready("int8", files={"model.onnx": b"v1"}, fmt="onnx")
    [row] = project.push("int8")
    rid, local = f"{ORG}/{MODEL}-int8", project.local
    local.commit(rid, "model", [CommitOperationAdd("a.txt", b"a")], "someone else", parent_commit=row.commit)
    with pytest.raises(ZooError, match="the repo moved since you read it: pull and push again"):
        local.commit(rid, "model", [CommitOperationAdd("b.txt", b"b")], "me", parent_commit=row.commit)
    assert "b.txt" not in local.files(rid)


def test_an_interrupted_commit_leaves_main_on_a_whole_commit(project, monkeypatch):
    folder = project.ready("int8", files={"model.onnx": b"v1"}, fmt="onnx")
    [row] = project.push("int8")
    (folder / "model.onnx").write_bytes(b"v2")

    def killed(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalHub, "_materialise", killed)
    with pytest.raises(KeyboardInterrupt):
        project.push("int8")
    monkeypatch.undo()
    rid, local = f"{ORG}/{MODEL}-int8", project.local
    assert local.head(rid) == row.commit and local.read_file(rid, "model", "model.onnx") == b"v1"
    [again] = project.push("int8")
    assert again.commit and local.read_file(rid, "model", "model.onnx") == b"v2"


def test_dry_run_writes_nothing_and_prints_operations_and_bytes(project):
    project.ready("int8", files={"model.onnx": b"x" * 2500}, fmt="onnx")
    [row] = project.push("int8", dry_run=True)
    assert row.commit is None and row.added == 4 and row.bytes >= 2500
    assert not project.store.hub.exists()
    out = project.out.getvalue()
    assert "dry run on the local hub: nothing is sent" in out
    assert f"{ORG}/{MODEL}-int8 (model): 4 operations" in out and "+ model.onnx (2.5 KB)" in out


def test_only_evaluated_variants_that_passed_their_gate_are_pushed(project):
    project.ready("fp32", files={"w": b"1"})
    project.evaluate("int8", accuracy=0.5, passed=False)
    project.stage("int8", files={"model.onnx": b"1"}, fmt="onnx")
    rows = project.push("fp32", "int8", "distilled")
    assert [r.repo_id for r in rows] == [f"{ORG}/{MODEL}-fp32"]
    out = project.out.getvalue()
    assert f"skipped {MODEL}:distilled: not evaluated (run `zoo eval {MODEL}:distilled`)" in out
    assert f"skipped {MODEL}:int8: gate failed (accuracy 0.5556 of fp32, needs 0.9)" in out
    rows = project.push("int8", allow_gate_failure=True)
    assert [r.repo_id for r in rows] == [f"{ORG}/{MODEL}-int8"] and rows[0].commit


def test_a_missing_or_stale_staged_repo_stops_the_push_before_anything_is_sent(project):
    project.ready("fp32", files={"w": b"1"})
    project.evaluate("distilled")
    with pytest.raises(ZooError, match=rf"{MODEL}:distilled: nothing staged at .*: run `zoo card {MODEL}:distilled`"):
        project.push("fp32", "distilled")
    assert not project.store.hub.exists()
    folder = project.stage("distilled")
    (folder / "results.json").write_text(json.dumps({"hash": "0" * 16}))
    with pytest.raises(ZooError, match="holds build 0000000000000000, not the current build"):
        project.push("distilled")


def test_the_space_and_the_adapter_repo_are_pushed_and_gating_passes_on(tiny_zoo):
    project = Project(tiny_zoo, gated=True)
    project.ready("qlora-4bit", files={"model.safetensors": b"w"})
    adapter = project.store.repo(MODEL, "qlora-4bit-adapter")
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "README.md").write_text("# adapter\n")
    space = project.store.space(MODEL)
    space.mkdir(parents=True)
    (space / "README.md").write_text("---\nsdk: gradio\n---\n")
    (space / "app.py").write_text("print('hi')\n")
    rows = project.push("qlora-4bit")
    assert [(r.repo_id, r.repo_type) for r in rows] == [
        (ids.repo_id(ORG, MODEL, "qlora-4bit"), "model"), (ids.adapter_repo_id(ORG, MODEL, "qlora-4bit"), "model"),
        (ids.space_id(ORG, MODEL), "space")]
    space_repo = repo_dir(project.store.hub, ids.space_id(ORG, MODEL), "space")
    head = (space_repo / "refs/heads/main").read_text().strip()
    assert (space_repo / "snapshots" / head / "app.py").read_text() == "print('hi')\n"
    for rid in (ids.repo_id(ORG, MODEL, "qlora-4bit"), ids.adapter_repo_id(ORG, MODEL, "qlora-4bit")):
        assert json.loads((repo_dir(project.store.hub, rid) / "settings.json").read_text()) == {"gated": "auto"}
    assert not (space_repo / "settings.json").exists()
    assert "pushed to the local hub" in project.out.getvalue()


def test_pull_by_target_picks_the_best_passing_variant(project, tmp_path):
    for variant, acc, p50 in (("fp32", 0.90, 5.0), ("int8", 0.90, 2.0), ("distilled", 0.95, 1.0)):
        project.evaluate(variant, accuracy=acc, p50=p50)
        project.stage(variant, files={"w": variant.encode()})
    project.evaluate("distilled", accuracy=0.95, passed=False)  # best metric, but its gate failed
    project.stage("distilled", files={"w": b"distilled"})
    project.push("fp32", "int8", "distilled", allow_gate_failure=True)
    dest = hub.pull(project.loaded, project.store, MODEL, target="x86-avx512", dest=tmp_path / "best",
                    console=project.console)
    assert (dest / "w").read_bytes() == b"int8"  # same accuracy as fp32, lower p50
    with pytest.raises(ZooError, match="no published variant for target 'cuda' passed its gate"):
        hub.pull(project.loaded, project.store, MODEL, target="cuda", console=project.console)
    with pytest.raises(UsageError, match="unknown target 'cud'"):
        hub.pull(project.loaded, project.store, MODEL, target="cud", console=project.console)


def test_cli_push_then_pull(project, tmp_path, monkeypatch):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["push", f"{MODEL}:int8", "--registry", str(project.path)])
    assert r.exit_code == 0, r.output
    head = project.local.head(f"{ORG}/{MODEL}-int8")
    assert head and head[:12] in r.output
    r = runner.invoke(app, ["pull", MODEL, "--variant", "int8", "--registry", str(project.path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / f"{MODEL}-int8" / "model.onnx").read_bytes() == b"g"
    r = runner.invoke(app, ["pull", MODEL, "--variant", "int8", "--revision", "zzz", "--registry",
                            str(project.path)])
    assert r.exit_code == 1 and "no branch, tag or commit 'zzz'" in r.output


@pytest.mark.slow
def test_built_fp32_and_int8_pulled_from_the_local_hub_load_with_the_standard_classes(project, tmp_path):
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from zoo import build

    nodes = [project.nodes["fp32"], project.nodes["int8"]]
    build.build(project.loaded, project.store, nodes, log=lambda *_: None)
    for node in nodes:
        project.evaluate(node.variant_id)
        project.stage(node.variant_id, model_dir=project.store.artifact(node.hash),
                      fmt=json.loads((project.store.artifact(node.hash) / "provenance.json").read_text())["format"])
    project.push("fp32", "int8")
    text = "the film was great and funny"
    dest = hub.pull(project.loaded, project.store, MODEL, variant="fp32", dest=tmp_path / "fp32",
                    console=project.console)
    assert "AutoModelForSequenceClassification.from_pretrained(" in project.out.getvalue()
    pulled, built = (AutoModelForSequenceClassification.from_pretrained(d)
                     for d in (dest, project.store.artifact(project.nodes["fp32"].hash)))
    tok = AutoTokenizer.from_pretrained(dest)
    logits = [np.asarray(m(**tok(text, return_tensors="pt")).logits.detach()) for m in (pulled, built)]
    assert np.allclose(logits[0], logits[1]) and pulled.config.id2label == {0: "rotten", 1: "fresh"}
    # the int8 graph through plain ONNX Runtime, with transformers' AutoConfig/AutoTokenizer (the card's snippet)
    import onnxruntime as ort
    from transformers import AutoConfig

    dest = hub.pull(project.loaded, project.store, MODEL, variant="int8", dest=tmp_path / "int8",
                    console=project.console)
    outs = []
    for d in (dest, project.store.artifact(project.nodes["int8"].hash)):
        session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        enc = AutoTokenizer.from_pretrained(d)(text, return_tensors="np")
        outs.append(session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0])
    assert np.allclose(outs[0], outs[1]) and AutoConfig.from_pretrained(dest).id2label == {0: "rotten", 1: "fresh"}
