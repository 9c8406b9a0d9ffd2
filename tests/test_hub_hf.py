"""The Hugging Face Hub backend without network: a real HfApi whose endpoints are replaced by an in-memory hub."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import requests
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.hf_api import RepoFile, RepoFolder
from rich.console import Console
from test_hub_local import MODEL, ORG, Project

from zoo import hub, ids
from zoo.errors import ZooError
from zoo.hub.hf import HfHub

FAKE_TOKEN = "hf_" + "fakeTOKEN0123456789abcdefghijklmnopq"  # built, so secret scanners do not flag it
ENDPOINTS = ("create_repo", "repo_info", "list_repo_tree", "create_commit", "list_repo_refs", "create_tag",
             "create_collection", "add_collection_item", "update_repo_settings", "snapshot_download",
             "hf_hub_download")


def http_error(status: int, text: str = "") -> HfHubHTTPError:
    response = requests.Response()
    response.status_code = status
    return HfHubHTTPError(f"{status} Server Error{text}", response=response)


class FakeHub:
    """What huggingface.co keeps for the endpoints the backend uses: repos with commits, files, tags."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.repos: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple[str, tuple, dict]] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.collections: dict[str, list[tuple[str, str]]] = {}
        self.land_then_fail = False  # create_commit applies the commit, then the answer is lost (HTTP 502)

    def api(self, monkeypatch, token: str = FAKE_TOKEN) -> HfApi:
        api = HfApi(token=token)
        for name in ENDPOINTS:
            monkeypatch.setattr(api, name, self._endpoint(name))  # raises if HfApi has no such method
        return api

    def _endpoint(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if self.failures.get(name):
                raise self.failures[name].pop(0)
            return getattr(self, f"_{name}")(*args, **kwargs)

        return call

    def called(self, name: str) -> list[tuple[tuple, dict]]:
        return [(a, k) for n, a, k in self.calls if n == name]

    def _repo(self, repo_id: str, repo_type: str | None) -> dict:
        key = (repo_type or "model", repo_id)
        if key not in self.repos:
            response = requests.Response()
            response.status_code = 404
            raise RepositoryNotFoundError(f"404 Repository Not Found for {repo_id}", response=response)
        return self.repos[key]

    def _new_commit(self, repo: dict, files: dict[str, bytes]) -> str:
        sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        repo["commits"][sha] = dict(files)
        repo["head"] = sha
        return sha

    def _at(self, repo: dict, revision: str | None) -> dict[str, bytes]:
        rev = revision or "main"
        sha = repo["head"] if rev == "main" else repo["tags"].get(rev, rev)
        return repo["commits"][sha]

    def _create_repo(self, repo_id, *, repo_type=None, exist_ok=False, space_sdk=None, **_):
        key = (repo_type or "model", repo_id)
        if key not in self.repos:
            self.repos[key] = {"commits": {}, "tags": {}, "head": None, "settings": {}}
            self._new_commit(self.repos[key], {".gitattributes": b"*.safetensors filter=lfs\n"})
        return SimpleNamespace(repo_id=repo_id)

    def _repo_info(self, repo_id, *, repo_type=None, revision=None, **_):
        repo = self._repo(repo_id, repo_type)
        rev = revision or "main"
        return SimpleNamespace(sha=repo["head"] if rev == "main" else repo["tags"].get(rev, rev))

    def _list_repo_tree(self, repo_id, *, recursive=False, revision=None, repo_type=None, **_):
        files = self._at(self._repo(repo_id, repo_type), revision)
        folders = {str(Path(p).parent) for p in files} - {"."}
        for folder in sorted(folders):
            yield RepoFolder(path=folder, oid="0" * 40)
        for path, data in sorted(files.items()):
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            if path.endswith((".safetensors", ".onnx", ".bin")):  # LFS: the tree names their sha256
                yield RepoFile(path=path, size=len(data), oid="f" * 40,
                               lfs={"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 130})
            else:
                yield RepoFile(path=path, size=len(data), oid=blob)

    def _create_commit(self, repo_id, operations, *, commit_message, repo_type=None, parent_commit=None, **_):
        repo = self._repo(repo_id, repo_type)
        if parent_commit is not None and parent_commit != repo["head"]:
            raise http_error(412, ": A commit has happened since. Please refresh and try again.")
        files = dict(repo["commits"][repo["head"]])
        for op in operations:
            if isinstance(op, CommitOperationDelete):
                del files[op.path_in_repo]
            else:
                src = op.path_or_fileobj
                files[op.path_in_repo] = src if isinstance(src, bytes) else Path(src).read_bytes()
        sha = self._new_commit(repo, files)
        repo.setdefault("messages", {})[sha] = commit_message
        if self.land_then_fail:
            self.land_then_fail = False
            raise http_error(502)
        return SimpleNamespace(oid=sha)

    def _list_repo_refs(self, repo_id, *, repo_type=None, **_):
        repo = self._repo(repo_id, repo_type)
        return SimpleNamespace(tags=[SimpleNamespace(name=t, target_commit=c) for t, c in repo["tags"].items()])

    def _create_tag(self, repo_id, *, tag, revision=None, repo_type=None, exist_ok=False, **_):
        repo = self._repo(repo_id, repo_type)
        if tag in repo["tags"] and not exist_ok:
            raise http_error(409)
        repo["tags"].setdefault(tag, revision or repo["head"])

    def _create_collection(self, title, *, namespace=None, exists_ok=False, **_):
        slug = f"{namespace}/{title}-64f9a55bb3115b4f513ec026"
        self.collections.setdefault(slug, [])
        return SimpleNamespace(slug=slug)

    def _add_collection_item(self, collection_slug, item_id, item_type, *, exists_ok=False, **_):
        if (item_id, item_type) not in self.collections[collection_slug]:
            self.collections[collection_slug].append((item_id, item_type))

    def _update_repo_settings(self, repo_id, *, gated=None, repo_type=None, **_):
        self._repo(repo_id, repo_type)["settings"]["gated"] = gated

    def _snapshot_download(self, repo_id, *, repo_type=None, revision=None, local_dir=None, **_):
        for path, data in self._at(self._repo(repo_id, repo_type), revision).items():
            (Path(local_dir) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(local_dir) / path).write_bytes(data)
        return str(local_dir)

    def _hf_hub_download(self, repo_id, filename, *, repo_type=None, revision=None, **_):
        files = self._at(self._repo(repo_id, repo_type), revision)
        if filename not in files:
            response = requests.Response()
            response.status_code = 404
            raise EntryNotFoundError(f"404 {filename}", response=response)
        out = self.tmp / "downloads" / uuid.uuid4().hex / filename
        out.parent.mkdir(parents=True)
        out.write_bytes(files[filename])
        return str(out)


@pytest.fixture
def fake(tmp_path) -> FakeHub:
    return FakeHub(tmp_path / "fake-hub")


@pytest.fixture
def project(tiny_zoo) -> Project:
    return Project(tiny_zoo)


def backend(fake: FakeHub, monkeypatch, sleeps: list | None = None) -> HfHub:
    return HfHub(token=FAKE_TOKEN, api=fake.api(monkeypatch), sleep=(sleeps if sleeps is not None else []).append)


def ready_int8_and_space(project: Project) -> Path:
    folder = project.ready("int8", files={"model.onnx": b"graph-v1" * 50}, fmt="onnx")
    space = project.store.space(MODEL)
    space.mkdir(parents=True)
    (space / "README.md").write_text("---\nsdk: gradio\n---\n")
    (space / "app.py").write_text("print('demo')\n")
    return folder


def test_one_commit_per_repo_with_parent_message_tag_and_collection(project, fake, monkeypatch):
    ready_int8_and_space(project)
    rows = project.push("int8", hub=backend(fake, monkeypatch))
    rid, sid = ids.repo_id(ORG, MODEL, "int8"), ids.space_id(ORG, MODEL)
    assert [r.repo_id for r in rows] == [rid, sid]
    creates = fake.called("create_repo")
    assert creates[0] == ((rid,), {"repo_type": "model", "exist_ok": True})
    assert creates[1] == ((sid,), {"repo_type": "space", "exist_ok": True, "space_sdk": "gradio"})
    commits = fake.called("create_commit")
    assert len(commits) == 2
    (repo_arg,), kw = commits[0]
    assert repo_arg == rid and kw["repo_type"] == "model"
    initial = next(iter(fake.repos[("model", rid)]["commits"]))
    assert kw["parent_commit"] == initial  # the head read before committing
    assert "registry 1.0.0" in kw["commit_message"]
    ops = kw["operations"]
    assert all(isinstance(op, CommitOperationAdd) for op in ops)  # .gitattributes is never deleted
    assert sorted(op.path_in_repo for op in ops) == ["README.md", "model.onnx", "provenance.json", "results.json"]
    assert fake.called("create_tag")[0] == ((rid,), {"tag": "1.0.0", "revision": rows[0].commit,
                                                     "repo_type": "model", "exist_ok": True})
    assert fake.repos[("space", sid)]["tags"] == {"1.0.0": rows[1].commit}
    assert fake.collections == {f"{ORG}/{MODEL}-64f9a55bb3115b4f513ec026": [(rid, "model"), (sid, "space")]}
    assert fake.called("create_collection")[0] == ((MODEL,), {"namespace": ORG, "exists_ok": True})
    assert not fake.called("update_repo_settings")  # the base is not gated


def test_a_second_push_sends_no_commit_and_a_changed_file_is_sent_alone(project, fake, monkeypatch):
    folder = ready_int8_and_space(project)
    api_hub = backend(fake, monkeypatch)
    project.push("int8", hub=api_hub)
    fake.calls.clear()
    rows = project.push("int8", hub=api_hub)
    assert not fake.called("create_commit") and not fake.called("create_tag")
    assert [r.commit for r in rows] == [None, None]
    (folder / "README.md").write_text("# int8, better card\n")  # a small file: compared by git blob sha1
    rows = project.push("int8", hub=api_hub)
    [(_, kw)] = fake.called("create_commit")
    assert [op.path_in_repo for op in kw["operations"]] == ["README.md"] and rows[0].commit


def test_a_lost_file_on_the_hub_is_deleted_and_gating_passes_on(tiny_zoo, fake, monkeypatch):
    project = Project(tiny_zoo, gated=True)
    folder = project.ready("int8", files={"model.onnx": b"g", "old.txt": b"x"}, fmt="onnx")
    api_hub = backend(fake, monkeypatch)
    project.push("int8", hub=api_hub)
    (folder / "old.txt").unlink()
    project.push("int8", hub=api_hub)
    ops = fake.called("create_commit")[-1][1]["operations"]
    assert [(type(op).__name__, op.path_in_repo) for op in ops] == [("CommitOperationDelete", "old.txt")]
    assert fake.called("update_repo_settings")[0] == ((ids.repo_id(ORG, MODEL, "int8"),),
                                                      {"gated": "auto", "repo_type": "model"})


def test_http_500_then_success_makes_one_commit(project, fake, monkeypatch):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    sleeps: list[float] = []
    fake.failures["create_commit"] = [http_error(500), requests.exceptions.ConnectionError("reset")]
    fake.failures["repo_info"] = [requests.exceptions.Timeout("read timed out")]
    [row] = project.push("int8", hub=backend(fake, monkeypatch, sleeps))
    repo = fake.repos[("model", ids.repo_id(ORG, MODEL, "int8"))]
    assert len(repo["commits"]) == 2 and repo["head"] == row.commit  # the initial commit and ours
    assert len(fake.called("create_commit")) == 3 and sleeps == [1.0, 1.0, 2.0]


def test_a_commit_whose_answer_was_lost_is_not_made_twice(project, fake, monkeypatch):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    fake.land_then_fail = True
    [row] = project.push("int8", hub=backend(fake, monkeypatch))
    repo = fake.repos[("model", ids.repo_id(ORG, MODEL, "int8"))]
    assert len(repo["commits"]) == 2 and row.commit == repo["head"]
    assert len(fake.called("create_commit")) == 1


def test_repeated_failure_makes_no_commit_and_one_clear_line(project, fake, monkeypatch):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    fake.failures["create_commit"] = [http_error(503) for _ in range(10)]
    with pytest.raises(ZooError) as e:
        project.push("int8", hub=backend(fake, monkeypatch))
    rid = ids.repo_id(ORG, MODEL, "int8")
    assert str(e.value) == (f"commit to {rid}: failed 5 times (503 Server Error); nothing was committed: "
                            "run the same command again")
    assert len(fake.repos[("model", rid)]["commits"]) == 1 and len(fake.called("create_commit")) == 5


def test_a_repo_that_moved_is_refused(project, fake, monkeypatch):
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    fake.failures["create_commit"] = [http_error(412)]
    with pytest.raises(ZooError, match="the repo moved since you read it: pull and push again"):
        project.push("int8", hub=backend(fake, monkeypatch))


def test_dry_run_reads_but_sends_nothing(project, fake, monkeypatch):
    ready_int8_and_space(project)
    rows = project.push("int8", hub=backend(fake, monkeypatch), dry_run=True)
    assert {name for name, _, _ in fake.calls} <= {"repo_info", "list_repo_tree"}
    assert not fake.repos and [r.added for r in rows] == [4, 2]
    out = project.out.getvalue()
    assert "dry run on the hf hub: nothing is sent" in out and "+ model.onnx (400 B)" in out


def test_pull_downloads_the_resolved_commit_and_picks_by_target(project, fake, monkeypatch, tmp_path):
    for variant, acc in (("fp32", 0.90), ("int8", 0.92)):
        project.evaluate(variant, accuracy=acc)
        project.stage(variant, files={"w": variant.encode()}, fmt="onnx" if variant == "int8" else "transformers")
    api_hub = backend(fake, monkeypatch)
    rows = project.push("fp32", "int8", hub=api_hub)
    dest = hub.pull(project.loaded, project.store, MODEL, target="x86-avx512", revision="1.0.0",
                    hub=api_hub, dest=tmp_path / "got", console=project.console)
    assert (dest / "w").read_bytes() == b"int8"
    [(_, kw)] = fake.called("snapshot_download")
    assert kw["revision"] == rows[1].commit and kw["local_dir"] == str(tmp_path / "got")
    assert "ORTModelForSequenceClassification.from_pretrained(" in project.out.getvalue()


def test_the_token_comes_from_the_environment_and_is_never_printed_or_written(project, fake, monkeypatch, capsys,
                                                                               tiny_zoo):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    made = []

    def fake_hfapi(token=None, **_):
        made.append(token)
        return fake.api(monkeypatch, token)

    monkeypatch.setattr(huggingface_hub, "HfApi", fake_hfapi)
    ready_int8_and_space(project)
    console = Console(file=io.StringIO(), width=200)
    hub.push(project.loaded, project.store, [project.nodes["int8"]], hub="hf", console=console)
    assert made == [FAKE_TOKEN]
    project.ready("fp32", files={"w": b"1"})
    fake.failures["create_commit"] = [http_error(400, f": bad request with Authorization: Bearer {FAKE_TOKEN}")]
    with pytest.raises(ZooError) as e:
        hub.push(project.loaded, project.store, [project.nodes["fp32"]], hub="hf", console=console)
    assert FAKE_TOKEN not in str(e.value) and "Bearer ***" in str(e.value)
    dest = hub.pull(project.loaded, project.store, MODEL, variant="int8", hub="hf",
                    dest=project.path.parent / "pulled", console=console)
    printed = console.file.getvalue() + "".join(capsys.readouterr())
    assert "pushed to the hf hub" in printed and str(dest) in printed and FAKE_TOKEN not in printed
    roots = [project.path.parent, Path(os.environ["HF_HOME"]), fake.tmp]
    written = [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]
    assert len(written) > 10
    assert not [p for p in written if FAKE_TOKEN.encode() in p.read_bytes()]
    assert not [p for repo in fake.repos.values() for files in repo["commits"].values()
                for p, data in files.items() if FAKE_TOKEN.encode() in data]


def test_pushing_without_a_token_says_how_to_get_one(project, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    with pytest.raises(ZooError, match=r"no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        project.push("int8", hub="hf")


REAL_TOKEN = os.environ.get("HF_TOKEN")  # read at import: the autouse fixture blanks it during tests


@pytest.mark.hub
def test_real_push_pull_and_no_op_repush_on_huggingface_co(tiny_zoo, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", REAL_TOKEN or "")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    api = HfApi(token=REAL_TOKEN)
    user = api.whoami()["name"]
    if user != user.lower():
        pytest.skip(f"the registry org must be lowercase; the token's user is {user}")
    name = f"zoo-test-{uuid.uuid4().hex[:8]}"
    tiny_zoo.write_text(tiny_zoo.read_text().replace("org: testorg", f"org: {user}")
                        .replace("tiny-sentiment:", f"{name}:"))
    project = Project(tiny_zoo)
    project.ready("int8", files={"model.onnx": b"graph" * 100}, fmt="onnx")
    rid = ids.repo_id(user, name, "int8")
    try:
        [first] = project.push("int8", hub="hf")
        assert first.commit and api.repo_info(rid).sha == first.commit
        assert "1.0.0" in [t.name for t in api.list_repo_refs(rid).tags]
        [again] = project.push("int8", hub="hf")
        assert again.commit is None
        dest = hub.pull(project.loaded, project.store, name, variant="int8", hub="hf", dest=tmp_path / "pulled",
                        console=project.console)
        assert (dest / "model.onnx").read_bytes() == b"graph" * 100
        assert json.loads((dest / "provenance.json").read_text()) == {"format": "onnx"}
    finally:
        api.delete_repo(rid, missing_ok=True)
        for c in api.list_collections(owner=user, limit=100):
            if c.title == name:
                api.delete_collection(c.slug, missing_ok=True)


def test_offline_mode_is_named_with_the_fix(project, fake, monkeypatch):
    from huggingface_hub.errors import OfflineModeIsEnabled

    project.ready("int8", files={"model.onnx": b"g"}, fmt="onnx")
    fake.failures["create_repo"] = [OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode")]
    with pytest.raises(ZooError, match="HF_HUB_OFFLINE is set: unset it to reach huggingface.co, or use `--hub local`"):
        project.push("int8", hub=backend(fake, monkeypatch))
    assert len(fake.called("create_repo")) == 1  # not retried
