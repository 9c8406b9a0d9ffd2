"""The embedded hub end to end over real HTTP: push → pull → load → re-push makes no commit; revisions, refusals,
gating, faults (5xx, lost replies, refused connections, slow replies), concurrent pushes and damaged objects.

The zoo's client is huggingface_hub (``zoo.hub.hf.HfHub``) talking to ``zoo.hub.server.HubServer`` on 127.0.0.1;
nothing is monkeypatched in huggingface_hub.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from rich.console import Console
from typer.testing import CliRunner

from zoo import hub, ids, plan, registry
from zoo.cli import app
from zoo.errors import UsageError, ZooError
from zoo.hub.hf import HfHub
from zoo.hub.server import HubServer
from zoo.hub.storage import fsck
from zoo.store import Store, write_json

ORG, MODEL = "testorg", "tiny-sentiment"
FAST = (0.05, 0.1, 0.2, 0.4)  # retry delays for tests: backoff, without the wait


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    """A tiny BERT sequence classifier saved with save_pretrained (config + safetensors + tokenizer)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = tmp_path_factory.mktemp("classifier")
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad"]) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=16, id2label={0: "rotten", 1: "fresh"},
                     label2id={"rotten": 0, "fresh": 1})
    BertForSequenceClassification(cfg).save_pretrained(path)
    return path


class Project:
    """The tiny project with results and staged repos written by hand, as eval and card would write them, and the
    embedded hub over its store served on 127.0.0.1 (``ZOO_HUB_URL``), so a test sees every request."""

    def __init__(self, registry_path: Path, monkeypatch, version: str | None = "1.0.0", gated: bool = False):
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
        self.server = HubServer(self.store.hub).start()
        monkeypatch.setenv("ZOO_HUB_URL", self.server.url)
        monkeypatch.setenv("ZOO_HUB_TOKEN", self.server.token)

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
        (folder / "README.md").write_text(f"---\nlicense: apache-2.0\n---\n# {variant}\n")
        (folder / "provenance.json").write_text(json.dumps({"format": fmt}))
        (folder / "results.json").write_bytes(self.store.results(node.hash).read_bytes())
        return folder

    def ready(self, variant: str, **kw) -> Path:
        self.evaluate(variant)
        return self.stage(variant, **kw)

    def push(self, *variants: str, **kw):
        return hub.push(self.loaded, self.store, [self.nodes[v] for v in variants], console=self.console, **kw)

    def pull(self, variant: str | None = None, **kw) -> Path:
        return hub.pull(self.loaded, self.store, self.model, variant=variant, console=self.console, **kw)

    def client(self, **kw) -> HfHub:
        return HfHub(self.server.token, endpoint=self.server.url, name="local", **kw)

    @property
    def api(self) -> HfApi:
        return HfApi(endpoint=self.server.url, token=self.server.token)


@pytest.fixture
def project(tiny_zoo, monkeypatch):
    p = Project(tiny_zoo, monkeypatch)
    yield p
    p.server.stop()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_of(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256(p) for p in folder.rglob("*") if p.is_file()}


RID = f"{ORG}/{MODEL}-int8"


def test_push_publishes_over_http_and_a_second_push_makes_no_commit_in_two_requests(project):
    folder = project.ready("int8", files={"model.onnx": b"graph-v1" * 2000, "onnx/config.json": b"{}"}, fmt="onnx")
    [row] = project.push("int8")
    info = project.api.repo_info(RID, files_metadata=True)
    assert row.commit == info.sha and len(info.sha) == 40 and row.added == 5 and row.deleted == 0
    remote = {s.rfilename: (s.lfs.sha256 if s.lfs else s.blob_id) for s in info.siblings}
    assert sorted(remote) == sorted(files_of(folder))
    assert remote["model.onnx"] == sha256(folder / "model.onnx")  # an LFS file: its sha256
    [commit] = project.api.list_repo_commits(RID)
    assert "registry 1.0.0" in commit.title
    assert [t.target_commit for t in project.api.list_repo_refs(RID).tags if t.name == "1.0.0"] == [row.commit]
    collection = project.api.get_collection(f"{ORG}/{MODEL}")
    assert [(i.item_id, i.item_type) for i in collection.items] == [(RID, "model")]

    project.server.requests.clear()
    [again] = project.push("int8")
    assert project.server.requests[f"model:{RID}"] <= 2, project.server.requests  # the goal: ≤ 2 per repo
    assert again.commit is None and again.added == again.deleted == 0
    assert project.api.repo_info(RID).sha == row.commit
    assert "no change" in project.out.getvalue()


def test_a_changed_file_makes_a_commit_with_only_that_file(project):
    folder = project.ready("int8", files={"model.onnx": b"graph-v1", "extra.txt": b"old"}, fmt="onnx")
    [first] = project.push("int8")
    (folder / "model.onnx").write_bytes(b"graph-v2")
    (folder / "extra.txt").unlink()
    [second] = project.push("int8")
    assert (second.added, second.deleted) == (1, 1) and second.commit != first.commit
    assert [c.commit_id for c in project.api.list_repo_commits(RID)] == [second.commit, first.commit]
    assert "extra.txt" not in project.api.list_repo_files(RID)
    old = huggingface_hub.hf_hub_download(RID, "model.onnx", revision="1.0.0", endpoint=project.server.url,
                                          cache_dir=project.store.root / "c")
    assert Path(old).read_bytes() == b"graph-v1"  # the 1.0.0 tag stays on the first commit
    assert second.tagged is None


def test_pull_gives_the_same_files_loads_and_replaces_a_previous_pull(project, tiny_classifier, tmp_path):
    from transformers import AutoModelForSequenceClassification

    folder = project.ready("fp32", model_dir=tiny_classifier)
    project.push("fp32")
    dest = tmp_path / "pulled"
    dest.mkdir()
    (dest / "README.md").write_text("another variant")
    (dest / "stale.onnx").write_bytes(b"from another variant")
    assert project.pull("fp32", dest=dest) == dest
    assert files_of(dest) == files_of(folder)  # no stale file, no huggingface_hub .cache
    model = AutoModelForSequenceClassification.from_pretrained(dest)
    assert model.config.id2label == {0: "rotten", 1: "fresh"}
    out = project.out.getvalue()
    assert f'AutoModelForSequenceClassification.from_pretrained("{dest}")' in out
    (dest / "config.json").write_text("{}")  # a pulled file is a copy: editing it leaves the hub alone
    assert project.client().read_file(f"{ORG}/{MODEL}-fp32", "model", "config.json") != b"{}"
    other = tmp_path / "not-a-pull"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ZooError, match="holds files that are not a pulled repo"):
        project.pull("fp32", dest=other)
    assert (other / "notes.txt").read_text() == "mine"


def test_revisions_resolve_by_branch_tag_commit_and_prefix(project, tmp_path):
    folder = project.ready("int8", files={"model.onnx": b"v1"}, fmt="onnx")
    [first] = project.push("int8")
    (folder / "model.onnx").write_bytes(b"v2")
    [second] = project.push("int8")
    client = project.client()
    assert client.resolve(RID) == client.resolve(RID, "model", "main") == second.commit
    assert client.resolve(RID, "model", "1.0.0") == first.commit
    assert client.resolve(RID, "model", first.commit) == first.commit
    assert client.resolve(RID, "model", first.commit[:8]) == first.commit
    with pytest.raises(ZooError, match=r"no branch, tag or commit 'nope' .*\(tags: 1.0.0\)"):
        client.resolve(RID, "model", "nope")
    dest = project.pull("int8", revision="1.0.0", dest=tmp_path / "old")
    assert (dest / "model.onnx").read_bytes() == b"v1"
    assert "ort.InferenceSession(" in project.out.getvalue()
    assert client.tag(RID, "model", "1.0.0", second.commit) is False  # an existing tag is left alone
    assert client.tag(RID, "model", "later", second.commit) is True
    assert client.resolve(RID, "model", "later") == second.commit


def test_a_stale_parent_commit_is_refused(project):
    project.ready("int8", files={"model.onnx": b"v1"}, fmt="onnx")
    [row] = project.push("int8")
    client = project.client()
    client.commit(RID, "model", [CommitOperationAdd("a.txt", b"a")], "someone else", parent_commit=row.commit)
    with pytest.raises(ZooError, match="the repo moved since you read it: pull and push again"):
        client.commit(RID, "model", [CommitOperationAdd("b.txt", b"b")], "me", parent_commit=row.commit)
    assert "b.txt" not in client.files(RID)


def test_concurrent_pushes_to_one_repo_one_wins_the_other_sees_the_parent_moved(project):
    project.ready("int8", files={"model.onnx": b"v0"}, fmt="onnx")
    [row] = project.push("int8")
    project.server.faults.slow_next, project.server.faults.slow_seconds = 2, 0.3  # both read before either commits
    outcomes: dict[str, object] = {}

    def push(name: str) -> None:
        try:
            outcomes[name] = project.client().commit(RID, "model", [CommitOperationAdd(f"{name}.bin", name.encode())],
                                                     name, parent_commit=row.commit)
        except ZooError as e:
            outcomes[name] = e

    threads = [threading.Thread(target=push, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [n for n, o in outcomes.items() if isinstance(o, str)]
    lost = [o for o in outcomes.values() if isinstance(o, ZooError)]
    assert len(won) == 1 and len(lost) == 1 and "the repo moved since you read it" in str(lost[0])
    assert len(project.api.list_repo_commits(RID)) == 2
    assert f"{won[0]}.bin" in project.api.list_repo_files(RID)


def test_dry_run_writes_nothing_and_prints_operations_and_bytes(project):
    project.ready("int8", files={"model.onnx": b"x" * 2500}, fmt="onnx")
    [row] = project.push("int8", dry_run=True)
    assert row.commit is None and row.added == 4 and row.bytes >= 2500
    with pytest.raises(RepositoryNotFoundError):
        project.api.repo_info(RID)
    out = project.out.getvalue()
    assert f"dry run on the local hub ({project.server.url}): nothing is sent" in out
    assert f"{RID} (model): 4 operations" in out and "+ model.onnx (2.5 KB)" in out


def test_only_evaluated_variants_that_passed_their_gate_are_pushed(project):
    project.ready("fp32", files={"w": b"1"})
    project.evaluate("int8", accuracy=0.5, passed=False)
    project.stage("int8", files={"model.onnx": b"1"}, fmt="onnx")
    rows = project.push("fp32", "int8", "distilled")
    assert [r.repo_id for r in rows] == [f"{ORG}/{MODEL}-fp32"]
    out = project.out.getvalue()
    assert f"skipped {MODEL}:distilled: not evaluated (run `zoo eval {MODEL}:distilled`)" in out
    assert f"skipped {MODEL}:int8: gate failed (accuracy 0.5556 of fp32, needs 0.9" in out
    rows = project.push("int8", allow_gate_failure=True)
    assert [r.repo_id for r in rows] == [RID] and rows[0].commit


def test_a_missing_or_stale_staged_repo_stops_the_push_before_anything_is_sent(project):
    project.ready("fp32", files={"w": b"1"})
    project.evaluate("distilled")
    with pytest.raises(ZooError, match=rf"{MODEL}:distilled: nothing staged at .*: run `zoo card {MODEL}:distilled`"):
        project.push("fp32", "distilled")
    assert project.server.requests.total() == 0
    folder = project.stage("distilled")
    (folder / "results.json").write_text(json.dumps({"hash": "0" * 16}))
    with pytest.raises(ZooError, match="holds build 0000000000000000, not the current build"):
        project.push("distilled")


def test_space_adapter_and_family_repos_are_pushed_and_gating_is_enforced_over_http(tiny_zoo, monkeypatch, tmp_path):
    project = Project(tiny_zoo, monkeypatch, gated=True)
    project.ready("qlora-4bit", files={"model.safetensors": b"w"})
    adapter = project.store.repo(MODEL, "qlora-4bit-adapter")
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "README.md").write_text("# adapter\n")
    family = project.store.repo(MODEL, "family")
    family.mkdir(parents=True)
    (family / "README.md").write_text("---\ntags: [modelzoo, family]\n---\n# family\n")
    space = project.store.space(MODEL)
    space.mkdir(parents=True)
    (space / "README.md").write_text("---\nsdk: gradio\n---\n")
    (space / "app.py").write_text("print('hi')\n")
    rows = project.push("qlora-4bit")
    rid, aid = ids.repo_id(ORG, MODEL, "qlora-4bit"), ids.adapter_repo_id(ORG, MODEL, "qlora-4bit")
    assert [(r.repo_id, r.repo_type) for r in rows] == [
        (rid, "model"), (aid, "model"), (ids.space_id(ORG, MODEL), "space"), (ids.family_repo_id(ORG, MODEL), "model")]
    assert project.api.space_info(ids.space_id(ORG, MODEL)).sdk == "gradio"
    assert project.api.repo_info(ids.family_repo_id(ORG, MODEL)).card_data.tags == ["modelzoo", "family"]
    anonymous = HfApi(endpoint=project.server.url, token=False)
    for repo in (rid, aid):
        assert project.api.repo_info(repo).gated == "auto"
        with pytest.raises(GatedRepoError):  # the same class huggingface.co raises for a gated repo
            anonymous.hf_hub_download(repo, "README.md", cache_dir=tmp_path / "anon")
        assert Path(project.api.hf_hub_download(repo, "README.md", cache_dir=tmp_path / "auth")).is_file()
    assert not project.api.space_info(ids.space_id(ORG, MODEL)).gated
    with pytest.raises(HfHubHTTPError) as e:  # a wrong token is 401, not "repo not found"
        HfApi(endpoint=project.server.url, token="wrong").create_repo(f"{ORG}/x", exist_ok=True)
    assert e.value.response.status_code == 401 and not isinstance(e.value, RepositoryNotFoundError)
    project.api.create_repo(f"{ORG}/secret", private=True)
    with pytest.raises(RepositoryNotFoundError):  # private repos are invisible without the token
        anonymous.repo_info(f"{ORG}/secret")
    assert "pushed to the local hub" in project.out.getvalue()
    project.server.stop()


def test_pull_by_target_picks_the_best_passing_variant(project, tmp_path):
    for variant, acc, p50 in (("fp32", 0.90, 5.0), ("int8", 0.90, 2.0), ("distilled", 0.95, 1.0)):
        project.evaluate(variant, accuracy=acc, p50=p50)
        project.stage(variant, files={"w": variant.encode()})
    project.evaluate("distilled", accuracy=0.95, passed=False)  # best metric, but its gate failed
    project.stage("distilled", files={"w": b"distilled"})
    project.push("fp32", "int8", "distilled", allow_gate_failure=True)
    dest = project.pull(target="x86-avx512", dest=tmp_path / "best")
    assert (dest / "w").read_bytes() == b"int8"  # same accuracy as fp32, lower p50
    with pytest.raises(ZooError, match="no published variant for target 'cuda' passed its gate"):
        project.pull(target="cuda")
    with pytest.raises(UsageError, match="unknown target 'cud'"):
        project.pull(target="cud")


def test_an_outage_is_reported_as_unreachable_never_as_a_missing_variant(project, tmp_path):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    project.push("int8")
    client = project.client(delays=FAST)
    project.server.faults.fail_next = 100
    with pytest.raises(ZooError, match=rf"the hub at {project.server.url} is unreachable \(HTTP 503"):
        client.read_file(RID, "model", "results.json")
    project.server.faults.fail_next = 100
    with pytest.raises(ZooError, match="is unreachable") as e:
        hub.pull(project.loaded, project.store, MODEL, target="x86-avx512", hub=client, console=project.console)
    assert "passed its gate" not in str(e.value)
    project.server.faults.fail_next = 0


def test_a_pull_during_an_outage_fails_and_keeps_the_old_folder(project, tmp_path):
    folder = project.ready("int8", files={"model.onnx": b"v1"}, fmt="onnx")
    project.push("int8")
    dest = project.pull("int8", dest=tmp_path / "int8")
    (folder / "model.onnx").write_bytes(b"v2")
    project.push("int8")
    project.server.faults.fail_next = 100
    with pytest.raises(ZooError, match="is unreachable"):
        hub.pull(project.loaded, project.store, MODEL, variant="int8", dest=dest, hub=project.client(delays=FAST),
                 console=project.console)
    assert (dest / "model.onnx").read_bytes() == b"v1"  # the old folder, untouched, and the pull said it failed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    project.server.faults.fail_next = 0


def test_5xx_then_success_is_retried_with_backoff_and_makes_one_commit(project):
    project.ready("int8", files={"model.onnx": b"g" * 100}, fmt="onnx")
    slept: list[float] = []
    client = project.client(delays=FAST, sleep=slept.append)
    project.server.faults.fail_next = 2
    [row] = project.push("int8", hub=client)
    assert row.commit and slept == list(FAST[:2])
    assert len(project.api.list_repo_commits(RID)) == 1


def test_a_commit_whose_reply_was_lost_is_not_made_twice(project):
    project.ready("int8", files={"model.onnx": b"g" * 100}, fmt="onnx")
    project.server.faults.lose_commit_replies = 1
    [row] = project.push("int8", hub=project.client(delays=FAST))
    [commit] = project.api.list_repo_commits(RID)
    assert row.commit == commit.commit_id


def test_refused_connections_and_slow_replies_are_waited_out(project):
    project.ready("int8", files={"model.onnx": b"g" * 100}, fmt="onnx")
    client = project.client(delays=(0.5, 1.0, 2.0, 4.0))
    project.server.refuse_for(0.8)
    project.server.faults.slow_next, project.server.faults.slow_seconds = 3, 0.5
    [row] = project.push("int8", hub=client)
    assert row.commit and len(project.api.list_repo_commits(RID)) == 1


def test_repeated_failure_makes_no_commit_and_one_clear_line(project):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    project.push("int8")
    (project.store.repo(MODEL, "int8") / "model.onnx").write_bytes(b"h")
    client = project.client(delays=FAST)
    head = client.head(RID)
    project.server.faults.fail_next = 100
    with pytest.raises(ZooError) as e:
        project.push("int8", hub=client)
    project.server.faults.fail_next = 0
    assert len(str(e.value).splitlines()) == 1 and "is unreachable" in str(e.value)
    assert client.head(RID) == head


def test_a_refused_readme_keeps_every_reason(project):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    (project.store.repo(MODEL, "int8") / "README.md").write_text("---\ntags: {a: 1}\nmodel-index: 3\n---\n# x\n")
    with pytest.raises(ZooError) as e:
        project.push("int8")
    text = str(e.value)
    assert '"tags" must be a string or an array' in text and '"model-index" must be an array' in text
    assert "unreachable" not in text and "nothing was committed" not in text


def test_a_damaged_object_is_never_served_fsck_finds_it_and_a_push_repairs_it(project, tmp_path):
    folder = project.ready("int8", files={"model.onnx": b"graph" * 1000}, fmt="onnx")
    project.push("int8")
    obj = project.store.hub / "objects" / sha256(folder / "model.onnx")[:2] / sha256(folder / "model.onnx")
    obj.chmod(0o644)
    obj.write_bytes(b"flipped" + obj.read_bytes()[7:])
    report = fsck(project.store.hub)
    assert not report.ok and report.damaged == [obj.name]
    with pytest.raises(ZooError, match="the hub's copy of model.onnx is damaged or missing: push"):
        hub.pull(project.loaded, project.store, MODEL, variant="int8", dest=tmp_path / "p",
                 hub=project.client(delays=FAST), console=project.console)
    assert not (tmp_path / "p").exists()  # nothing half-pulled
    assert not obj.exists() and (project.store.hub / "quarantine" / obj.name).is_file()
    [row] = project.push("int8")  # the hub reports the file gone, so the push uploads it again
    assert row.added == 1
    assert fsck(project.store.hub, repair=True).ok
    assert (project.pull("int8", dest=tmp_path / "ok") / "model.onnx").read_bytes() == b"graph" * 1000


def test_cli_push_then_pull(project, tmp_path, monkeypatch):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["push", f"{MODEL}:int8", "--registry", str(project.path)])
    assert r.exit_code == 0, r.output
    head = project.client().head(RID)
    assert head and head[:12] in r.output
    r = runner.invoke(app, ["pull", MODEL, "--variant", "int8", "--registry", str(project.path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / f"{MODEL}-int8" / "model.onnx").read_bytes() == b"g"
    assert not (tmp_path / f"{MODEL}-int8" / ".cache").exists()
    r = runner.invoke(app, ["pull", MODEL, "--variant", "int8", "--revision", "zzz", "--registry",
                            str(project.path)])
    assert r.exit_code == 1 and "no branch, tag or commit 'zzz'" in r.output


def test_without_zoo_hub_url_each_command_starts_its_own_server(tiny_zoo, monkeypatch, tmp_path):
    project = Project(tiny_zoo, monkeypatch)
    project.server.stop()
    monkeypatch.delenv("ZOO_HUB_URL")
    monkeypatch.delenv("ZOO_HUB_TOKEN")
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    [row] = project.push("int8")
    assert row.commit and (project.store.hub / "token").is_file()
    assert (project.pull("int8", dest=tmp_path / "x") / "model.onnx").read_bytes() == b"g"


@pytest.mark.slow
def test_built_fp32_and_int8_pulled_from_the_hub_load_with_the_standard_classes(project, tmp_path):
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from zoo import build

    nodes = [project.nodes["fp32"], project.nodes["int8"]]
    build.build(project.loaded, project.store, nodes, log=lambda *_: None)
    for node in nodes:
        project.evaluate(node.variant_id)
        project.stage(node.variant_id, model_dir=project.store.artifact(node.hash),
                      fmt=json.loads((project.store.artifact(node.hash) / "provenance.json").read_text())["format"])
    project.push("fp32", "int8")
    text = "the film was great and funny"
    dest = project.pull("fp32", dest=tmp_path / "fp32")
    assert "AutoModelForSequenceClassification.from_pretrained(" in project.out.getvalue()
    pulled, built = (AutoModelForSequenceClassification.from_pretrained(d)
                     for d in (dest, project.store.artifact(project.nodes["fp32"].hash)))
    tok = AutoTokenizer.from_pretrained(dest)
    logits = [np.asarray(m(**tok(text, return_tensors="pt")).logits.detach()) for m in (pulled, built)]
    assert np.allclose(logits[0], logits[1]) and pulled.config.id2label == {0: "rotten", 1: "fresh"}
    # the int8 graph through plain ONNX Runtime with transformers' AutoConfig/AutoTokenizer, as `zoo pull` prints
    dest = project.pull("int8", dest=tmp_path / "int8")
    assert "ort.InferenceSession(" in project.out.getvalue()
    outs = []
    for d in (dest, project.store.artifact(project.nodes["int8"].hash)):
        session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        enc = AutoTokenizer.from_pretrained(d)(text, return_tensors="np")
        outs.append(session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0])
    assert np.allclose(outs[0], outs[1]) and AutoConfig.from_pretrained(dest).id2label == {0: "rotten", 1: "fresh"}


def test_pull_prints_a_loader_that_fits_each_artifact_format(tmp_path):
    from zoo.families import family_of

    def load_lines(task, folder, fmt):
        return family_of(task).load_lines(folder, fmt)

    image, lm, text = "image-classification", "text-generation", "text-classification"
    assert "ort.InferenceSession(" in "\n".join(load_lines(image, tmp_path, "onnx-image"))
    torch_lines = "\n".join(load_lines(image, tmp_path, "torch-image"))
    assert "efficientnet_lite.py" in torch_lines and "lite.load(" in torch_lines
    assert "og.Model(" in "\n".join(load_lines(lm, tmp_path, "onnx-genai"))
    assert "ort.InferenceSession(" in "\n".join(load_lines(text, tmp_path, "onnx"))
    for task, fmt in ((image, "onnx-image"), (image, "torch-image"), (lm, "onnx-genai"), (text, "onnx")):
        assert "AutoModel" not in "\n".join(load_lines(task, tmp_path, fmt))
    assert "AutoModelForCausalLM.from_pretrained(" in "\n".join(load_lines(lm, tmp_path, "transformers-causal-lm"))
