"""The one hub client (huggingface_hub) on its own: error classes and messages for whichever HTTP library the
installed huggingface_hub uses, the token never leaking, and the token-gated round trip on huggingface.co.

Everything but the ``hub``-marked test talks to the embedded hub on 127.0.0.1 (no zoo project, no transformers:
these run on huggingface_hub 0.x and 1.x/2.x alike).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from zoo.errors import ZooError
from zoo.hub.hf import HfHub, retryable, transport_errors
from zoo.hub.server import HubServer
from zoo.hub.storage import HubStorage

FAKE_TOKEN = "hf_" + "fakeTOKEN0123456789abcdefghijklmnopq"  # built, so secret scanners do not flag it
FAST = (0.01, 0.01, 0.01, 0.01)


@pytest.fixture
def server(tmp_path):
    with HubServer(tmp_path / "hub", token=FAKE_TOKEN) as s:
        yield s


def client(server: HubServer, **kw) -> HfHub:
    return HfHub(server.token, endpoint=server.url, name="local", delays=FAST, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_transport_errors_come_from_the_library_huggingface_hub_uses():
    from huggingface_hub.utils import get_session

    lib = type(get_session()).__module__.split(".")[0]
    errors = transport_errors()
    assert errors and all(e.__module__.split(".")[0] == lib for e in errors)


def test_a_refused_connection_is_retried_then_reported_as_unreachable(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    slept: list[float] = []
    hub = HfHub(FAKE_TOKEN, endpoint=url, name="local", delays=(0.01, 0.02), sleep=slept.append)
    for call in (lambda: hub.head("org/a"), lambda: hub.snapshot("org/a", "model", None, tmp_path / "x")):
        slept.clear()
        with pytest.raises(ZooError, match=rf"the hub at {url} is unreachable .*3 tries") as e:
            call()
        assert slept == [0.01, 0.02] and len(str(e.value).splitlines()) == 1
    with pytest.raises(ZooError, match=rf"the hub at {url} is unreachable"):  # huggingface_hub 0.x retries it itself
        hub.read_file("org/a", "model", "results.json")


def test_the_real_exception_classes_are_classified(server):
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo("org/a")
    api.create_commit("org/a", operations=[CommitOperationAdd("a.txt", b"a")], commit_message="m")
    with pytest.raises(EntryNotFoundError) as missing:
        api.hf_hub_download("org/a", "nope.txt", cache_dir=server.storage.root.parent / "c")
    assert not retryable(missing.value)
    server.faults.fail_next = 100  # more than huggingface_hub's own retries
    with pytest.raises(LocalEntryNotFoundError) as outage:  # what huggingface_hub raises for a 5xx on download
        api.hf_hub_download("org/a", "a.txt", cache_dir=server.storage.root.parent / "c2")
    server.faults.fail_next = 0
    assert retryable(outage.value)


def test_read_file_tells_absent_from_unreachable(server):
    hub = client(server)
    hub.create_repo("org/a")
    hub.commit("org/a", "model", [CommitOperationAdd("a.txt", b"a")], "m", None)
    assert hub.read_file("org/a", "model", "a.txt") == b"a"
    assert hub.read_file("org/a", "model", "nope.txt") is None
    assert hub.read_file("org/nope", "model", "a.txt") is None
    server.faults.fail_next = 2  # fewer than the tries: the read succeeds
    assert hub.read_file("org/a", "model", "a.txt") == b"a"
    server.faults.fail_next = 100
    with pytest.raises(ZooError, match="unreachable"):
        hub.read_file("org/a", "model", "a.txt")


def test_the_token_is_never_printed_or_written(server, tmp_path, capsys):
    hub = client(server)
    hub.create_repo("org/a")
    bad = f"---\ntags: {{a: 1}}\n---\nAuthorization: Bearer {FAKE_TOKEN}\n".encode()
    with pytest.raises(ZooError) as e:
        hub.commit("org/a", "model", [CommitOperationAdd("README.md", bad)], "m", None)
    assert FAKE_TOKEN not in str(e.value) and '"tags" must be a string' in str(e.value)
    hub.commit("org/a", "model", [CommitOperationAdd("a.bin", b"\0" * 100)], "m", None)
    hub.snapshot("org/a", "model", None, tmp_path / "pulled")
    out = "".join(capsys.readouterr())
    assert FAKE_TOKEN not in out
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "token"]
    assert written and not [p for p in written if FAKE_TOKEN.encode() in p.read_bytes()]


def test_a_wrong_token_says_which_token_to_use(server):
    hub = HfHub("wrong", endpoint=server.url, name="local", delays=FAST)
    with pytest.raises(ZooError, match=r"refused the token \(401\): set ZOO_HUB_TOKEN"):
        hub.create_repo("org/a")


def test_the_store_keeps_one_object_per_content_and_fsck_reports_damage(server, tmp_path):
    from zoo.hub.storage import fsck

    hub = client(server)
    for name in ("org/a", "org/b"):
        hub.create_repo(name)
        hub.commit(name, "model", [CommitOperationAdd("w.bin", b"\0same" * 1000)], "m", None)
    objects = [p for p in (server.storage.root / "objects").rglob("*") if p.is_file()]
    assert len(objects) == 1
    assert fsck(server.storage.root).ok
    objects[0].chmod(0o644)
    objects[0].write_bytes(b"x")
    report = fsck(server.storage.root, repair=True)
    assert report.damaged == [objects[0].name] and len(report.missing) == 2 and not objects[0].exists()
    assert any("push the variant again" in line for line in report.lines())


def test_pushing_without_a_token_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ZooError, match=r"no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        HfHub.from_env(require_token=True)


def test_offline_mode_is_named_with_the_fix_for_huggingface_co_but_not_for_the_embedded_hub(server, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    try:
        from huggingface_hub.utils import reset_sessions
    except ImportError:
        def reset_sessions() -> None:
            pass
    reset_sessions()
    slept: list[float] = []
    remote = HfHub(FAKE_TOKEN, sleep=slept.append)
    with pytest.raises(ZooError, match="HF_HUB_OFFLINE is set: unset it to reach https://huggingface.co"):
        remote.create_repo("org/a")
    assert slept == []  # not retried
    local = client(server)  # the embedded hub is how the zoo works without a network
    local.create_repo("org/a")
    assert local.head("org/a") is None
    monkeypatch.undo()
    reset_sessions()


def test_the_storage_token_file_is_private(tmp_path):
    storage = HubStorage(tmp_path / "hub")
    token = storage.token()
    assert token == storage.token() and (tmp_path / "hub" / "token").stat().st_mode & 0o077 == 0


REAL_TOKEN = os.environ.get("HF_TOKEN")  # read at import: the autouse fixture blanks it during tests


@pytest.mark.hub
def test_real_push_pull_and_no_op_repush_on_huggingface_co(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", REAL_TOKEN or "")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    api = HfApi(token=REAL_TOKEN)
    user = api.whoami()["name"]
    rid = f"{user}/zoo-test-{uuid.uuid4().hex[:8]}"
    hub = HfHub(REAL_TOKEN)
    folder = tmp_path / "staged"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"graph" * 100)
    (folder / "provenance.json").write_text(json.dumps({"format": "onnx"}))
    from zoo.hub import ops

    try:
        hub.create_repo(rid)
        plan = ops.plan(folder, {})
        first = hub.commit(rid, "model", plan.operations, "push", None)
        state = hub.state(rid)
        assert state.head == first and ops.plan(folder, state.files).empty  # a re-push would send nothing
        assert hub.tag(rid, "model", "1.0.0", first) is True
        dest = hub.snapshot(rid, "model", "1.0.0", tmp_path / "pulled")
        assert (dest / "model.onnx").read_bytes() == b"graph" * 100 and not (dest / ".cache").exists()
    finally:
        api.delete_repo(rid, missing_ok=True)


def test_snapshot_downloads_into_a_temp_folder_beside_the_destination(server, tmp_path):
    hub = client(server)
    hub.create_repo("org/a")
    hub.commit("org/a", "model", [CommitOperationAdd("README.md", b"# a"), CommitOperationAdd("d/w.bin", b"\0")],
               "m", None)
    dest = hub.snapshot("org/a", "model", None, tmp_path / "a")
    assert sorted(p.relative_to(dest).as_posix() for p in Path(dest).rglob("*") if p.is_file()) == [
        "README.md", "d/w.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["a", "hub"] or sorted(p.name for p in tmp_path.iterdir()) == [
        "a", "hub"]
