"""Damage at rest, hostile sources, inputs that validate but break later stages, and odd settings: each gives one
line naming the file and the fix (never a traceback, never a silent wrong result, never a partial publish)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_card import MODEL, published  # noqa: F401  (the shared, session-wide published project)
from typer.testing import CliRunner

from zoo import plan, registry
from zoo.cli import app
from zoo.store import Store

runner = CliRunner()


def _zoo(project: Path, *args: str, env: dict | None = None):
    """Run the CLI in ``project``; returns the result after checking its error output is one line per problem."""
    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = runner.invoke(app, list(args), env=env)
    finally:
        os.chdir(cwd)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture
def project(published, tmp_path) -> Path:  # noqa: F811
    """A private copy of the published tiny project (store, staged repos and local hub), safe to damage."""
    dest = tmp_path / "project"
    shutil.copytree(published.parent, dest, symlinks=True)
    return dest


def _errors(result) -> list[str]:
    """The error lines, without the progress bar's (which a terminal erases)."""
    return [ln for ln in result.stderr.strip().splitlines() if not ln.startswith(("⠋", "⠙", "⠹", "⠸", "⠼", "⠴"))]


def _node(project: Path, variant: str) -> plan.Node:
    loaded = registry.load(project / "registry.yaml")
    return next(n for n in plan.make(loaded) if n.variant_id == variant)


def _hub_heads(project: Path) -> dict[str, str]:
    hub = project / ".zoo" / "hub"
    return {str(p.relative_to(hub)): p.read_text() for p in hub.glob("models/*/*/refs/heads/main")}


def _flip(path: Path, at: int = 0, n: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    at = min(at, max(0, len(data) - n))
    for i in range(at, min(len(data), at + n)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- recorded sha256s are checked


def test_flipped_bytes_in_an_artifact_stop_eval_card_and_push(project):
    node = _node(project, "int8")
    onnx = project / ".zoo" / "artifacts" / node.hash / "model.onnx"
    _flip(onnx, at=onnx.stat().st_size // 2)
    heads = _hub_heads(project)
    for args in (["eval", "tiny-sentiment:int8"], ["card", "tiny-sentiment:int8"], ["push", "tiny-sentiment:int8"]):
        result = _zoo(project, *args)
        lines = [ln for ln in result.stderr.splitlines() if "model.onnx" in ln]
        assert result.exit_code == 1, (args, result.output)
        assert lines and "sha256 differs" in lines[0] and "`zoo build tiny-sentiment:int8 --force`" in lines[0], \
            (args, result.stderr)
    assert _hub_heads(project) == heads, "a damaged artifact was published"


def test_a_damaged_parent_is_not_built_from(project):
    fp32, int8 = _node(project, "fp32"), _node(project, "int8")
    weights = project / ".zoo" / "artifacts" / fp32.hash / "model.safetensors"
    _flip(weights, at=weights.stat().st_size // 2)
    shutil.rmtree(project / ".zoo" / "artifacts" / int8.hash)
    result = _zoo(project, "build", "tiny-sentiment:int8")
    assert result.exit_code == 1
    assert _errors(result)[-1] == (
        f"{weights}: sha256 differs from provenance.json's (the file was changed or damaged): "
        "run `zoo build tiny-sentiment:fp32 --force`")
    assert not (project / ".zoo" / "artifacts" / int8.hash).exists()


def test_truncated_safetensors_is_one_line_on_eval_force(project):
    node = _node(project, "fp32")
    weights = project / ".zoo" / "artifacts" / node.hash / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = _zoo(project, "eval", "tiny-sentiment:fp32", "--force")
    assert result.exit_code == 1
    assert _errors(result) == [
        f"{weights}: sha256 differs from provenance.json's (the file was changed or damaged): "
        "run `zoo build tiny-sentiment:fp32 --force`"]


def test_a_damaged_staged_file_is_not_pushed(project):
    staged = project / ".zoo" / "repos" / "tiny-sentiment-fp32" / "model.safetensors"
    staged.unlink()  # a staged copy, not a link into the artifact, so the artifact stays whole
    staged.write_bytes(b"\0" * 64)
    heads = _hub_heads(project)
    result = _zoo(project, "push", "tiny-sentiment:fp32")
    assert result.exit_code == 1
    assert f"{staged}: sha256 differs" in result.stderr and "run `zoo card tiny-sentiment:fp32`" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "nothing was pushed"
    assert _hub_heads(project) == heads


# ---------------------------------------------------------------- damaged state is one line with the fix


@pytest.mark.parametrize("damage", ["truncated", "not-an-object", "empty"])
def test_invalid_provenance_is_one_line_on_every_stage(project, damage):
    node = _node(project, "fp32")
    prov = project / ".zoo" / "artifacts" / node.hash / "provenance.json"
    prov.write_text({"truncated": prov.read_text()[:50], "not-an-object": "[1, 2]", "empty": ""}[damage])
    for args in (["eval", "tiny-sentiment:fp32"], ["card", "tiny-sentiment:fp32"], ["space", "tiny-sentiment"],
                 ["push", "tiny-sentiment:fp32"]):
        result = _zoo(project, *args)
        assert result.exit_code == 1, (args, result.output)
        line = _errors(result)[0]
        assert line.startswith(f"{prov}: damaged") and "`zoo build tiny-sentiment:fp32 --force`" in line, \
            (args, result.stderr)


def test_invalid_results_json_is_one_line_and_eval_force_repairs_it(project):
    node = _node(project, "int8")
    results = project / ".zoo" / "artifacts" / f"{node.hash}.results.json"
    results.write_text(results.read_text()[:40])
    listed = {(r["variant"]): r["status"] for r in json.loads(_zoo(project, "list", "--json").stdout)}
    assert listed["int8"] == "damaged results (zoo eval tiny-sentiment:int8 --force)"
    for args in (["push", "tiny-sentiment:int8"], ["card", "tiny-sentiment:int8"], ["eval", "tiny-sentiment:int8"]):
        result = _zoo(project, *args)
        assert result.exit_code == 1, (args, result.output)
        assert f"{results}: damaged (not valid JSON" in result.stderr
        assert "run `zoo eval tiny-sentiment:int8 --force`" in result.stderr
    forced = _zoo(project, "eval", "tiny-sentiment:int8", "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(results.read_text())["variant"] == "int8"


def test_invalid_staged_results_json_is_one_line_on_push(project):
    staged = project / ".zoo" / "repos" / "tiny-sentiment-fp32" / "results.json"
    staged.unlink()
    staged.write_text('{"hash": ')
    heads = _hub_heads(project)
    result = _zoo(project, "push", "tiny-sentiment:fp32")
    assert result.exit_code == 1
    assert f"{staged}: damaged (not valid JSON" in result.stderr and "zoo card tiny-sentiment:fp32" in result.stderr
    assert _hub_heads(project) == heads


@pytest.mark.parametrize("value", ["²", "abc", "-1", "0", "1e3", "99999999999999999999", "2 threads"])
def test_odd_zoo_threads_is_one_line(tiny_zoo, value):
    result = _zoo(tiny_zoo.parent, "list", env={"ZOO_THREADS": value})
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ZOO_THREADS=") and "whole number" in lines[0], lines


def test_zoo_home_pointing_at_a_file_is_one_line(tiny_zoo, tmp_path):
    home = tmp_path / "not-a-folder"
    home.write_text("x")
    for args in (["list"], ["push"], ["build"], ["fsck"]):
        result = _zoo(tiny_zoo.parent, *args, env={"ZOO_HOME": str(home)})
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.strip().splitlines() == [
            f"ZOO_HOME '{home}': '{home}' is a file, not a folder: point ZOO_HOME at a folder (or unset it to use "
            ".zoo/ beside registry.yaml)"], args


def test_unexpected_library_error_is_one_line_with_a_log(project, monkeypatch):
    from zoo import evaluate

    def boom(*_a, **_k):
        from safetensors import SafetensorError

        raise SafetensorError("Error while deserializing header: HeaderTooSmall")

    monkeypatch.setattr(evaluate, "_evaluate_one", boom)
    result = _zoo(project, "eval", "tiny-sentiment:fp32", "--force")
    assert result.exit_code == 1
    line, = _errors(result)
    assert line.startswith("unexpected SafetensorError: Error while deserializing header: HeaderTooSmall (traceback "
                           "in ") and "zoo fsck --repair" in line
    log = Path(line.split("traceback in ")[1].split(")")[0])
    assert "Traceback" in log.read_text()
    log.unlink()


# ---------------------------------------------------------------- zoo fsck


def test_fsck_finds_damage_and_repair_quarantines_it_so_it_rebuilds(project):
    fp32, int8 = _node(project, "fp32"), _node(project, "int8")
    store = Store(project / ".zoo")
    assert _zoo(project, "fsck").exit_code == 0
    _flip(store.artifact(int8.hash) / "model.onnx", n=16)
    store.results(fp32.hash).write_text("{")
    hub_temp = store.hub / "tmp" / ".tmp-obj-999999999p-abc"
    hub_temp.write_text("left by a killed push")
    checked = _zoo(project, "fsck")
    assert checked.exit_code == 1
    assert "model.onnx: sha256 differs" in checked.stdout and "zoo build tiny-sentiment:int8 --force" in checked.stdout
    assert f"{store.results(fp32.hash)}: damaged" in checked.stdout
    assert store.is_built(int8.hash), "a check without --repair changed nothing"
    repaired = _zoo(project, "fsck", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert not store.is_built(int8.hash) and list((store.root / "quarantine").iterdir())
    assert not store.results(fp32.hash).exists()
    assert not hub_temp.exists()
    listed = {r["variant"]: r["status"] for r in json.loads(_zoo(project, "list", "--json").stdout)}
    assert listed["int8"] == "planned" and listed["fp32"] == "built"
    assert _zoo(project, "fsck").exit_code == 0


def test_killed_push_temps_are_swept_only_when_their_writer_is_gone(project):
    objects = project / ".zoo" / "hub" / "tmp"  # the embedded hub's uploads in progress
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    gone = objects / f".tmp-abc-{dead}p-xyz"
    live = objects / f".tmp-abc-{os.getpid()}p-xyz"
    old = objects / ".tmp-legacy-name"
    for p in (gone, live, old):
        p.write_bytes(b"partial object")
    os.utime(old, (0, 0))  # an old temp of the naming before PIDs
    assert _zoo(project, "push", "tiny-sentiment:fp32").exit_code == 0
    assert not gone.exists() and not old.exists(), "temps of killed pushes stayed"
    assert live.exists(), "a temp of a live writer was removed"


# ---------------------------------------------------------------- distinct variants never share results


def test_content_identical_variants_are_distinct_artifacts(built_tiny_zoo, tmp_path):
    dest = tmp_path / "p"
    shutil.copytree(built_tiny_zoo.parent, dest)
    reg = dest / "registry.yaml"
    reg.write_text(reg.read_text().replace(
        "      int8: {kind: int8, from: fp32, recipe: int8, target: x86-avx512}\n",
        "      int8: {kind: int8, from: fp32, recipe: int8, target: x86-avx512}\n"
        "      int8-copy: {kind: int8, from: fp32, recipe: int8, target: x86-avx512}\n"))
    nodes = {n.variant_id: n for n in plan.make(registry.load(reg))}
    assert nodes["int8"].hash != nodes["int8-copy"].hash
    listed = {r["variant"]: r["status"] for r in json.loads(_zoo(dest, "list", "--json").stdout)}
    assert listed["int8"] == "built" and listed["int8-copy"] == "planned"


# ---------------------------------------------------------------- the demo launcher


def test_demo_port_out_of_range_is_one_line(tiny_zoo):
    for port in ("70000", "-1"):
        result = _zoo(tiny_zoo.parent, "demo", "tiny-sentiment", "--port", port)
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [
            f"--port {port}: a port is a number from 1 to 65535 (or 0 for any free port)"]


@pytest.mark.slow
def test_demo_refuses_large_bodies_prints_its_real_port_and_stops_on_sigterm(published, tmp_path):  # noqa: F811
    import http.client
    import re
    import signal
    import socket
    import time
    import urllib.request

    import psutil

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    result = _zoo(published.parent, "demo", "tiny-sentiment", "--port", str(taken))
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[-1] == (
        f"port {taken} is in use: pick another with --port, or --port 0 for any free port")
    busy.close()

    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "zoo", "demo", "tiny-sentiment", "--port", "0"],
                                cwd=published.parent, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        url = None
        while time.monotonic() < deadline and url is None:
            assert proc.poll() is None, log.read_text()
            m = re.search(r"serving on (http://127\.0\.0\.1:\d+)", log.read_text())
            url = m and m.group(1)
            time.sleep(0.5)
        assert url, log.read_text()
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            assert r.status == 200
        # a 200 MB body is refused from its Content-Length, before one byte of it is sent
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        conn.putrequest("POST", "/gradio_api/call/classify")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(200_000_000))
        conn.endheaders()
        assert conn.getresponse().status == 413
        conn.close()
        from gradio_client import Client

        rows = Client(url + "/", verbose=False).predict("a warm, moving film", api_name="/classify")[0]
        assert rows["data"] if isinstance(rows, dict) else rows
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the server runs in a child process"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"orphaned after SIGTERM: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()


# ---------------------------------------------------------------- sources stay inside the repository


SECRET = "AKIA" + "EXAMPLESECRETLINE1234"  # built at run time, so no scanner mistakes it for a real key


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the project holding a 'credentials' CSV whose first line is a secret."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "creds.csv").write_text(f"{SECRET},x\n1,2\n")
    return folder


@pytest.mark.parametrize("source", ["file:/etc/passwd", "file:../../..", "file:assets/../../outside/creds.csv",
                                    "file:assets/link-out"])
def test_file_sources_outside_the_registry_folder_are_rejected_by_validate(tiny_zoo, outside, source):
    (tiny_zoo.parent / "assets" / "link-out").symlink_to(outside / "creds.csv")
    tiny_zoo.write_text(tiny_zoo.read_text().replace('source: "file:assets/reviews.csv"', f'source: "{source}"'))
    for args in (["validate"], ["validate", "--sources"], ["build", "tiny-sentiment:fp32"]):
        result = _zoo(tiny_zoo.parent, *args)
        assert result.exit_code == 1, (args, result.output)
        line, = result.stderr.strip().splitlines()
        assert line.startswith("registry.yaml:11: models.tiny-sentiment.dataset.source: ") \
            and "is outside the registry's folder" in line and "ZOO_FILE_MIRRORS" in line, line
        assert SECRET not in result.output


def test_an_allow_listed_mirror_may_hold_sources(tiny_zoo, outside):
    tiny_zoo.write_text(tiny_zoo.read_text().replace('source: "file:assets/reviews.csv"',
                                                     f'source: "file:{outside / "creds.csv"}"'))
    assert _zoo(tiny_zoo.parent, "validate", env={"ZOO_FILE_MIRRORS": str(outside)}).exit_code == 0
    assert _zoo(tiny_zoo.parent, "validate").exit_code == 1


def test_a_column_error_never_prints_the_files_header(tiny_zoo):
    csv = tiny_zoo.parent / "assets" / "reviews.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0].replace("text", SECRET), *lines[1:]]) + "\n")
    result = _zoo(tiny_zoo.parent, "validate", "--sources")
    assert result.exit_code == 1
    assert "column 'text' is not in 'reviews.csv' (its header has 2 columns)" in result.stderr
    assert SECRET not in result.output


# ---------------------------------------------------------------- validate what the later stages need


@pytest.mark.parametrize("edit, message", [
    (("org: testorg", "org: testorg\nversion: 1.0/evil"), "'1.0/evil' cannot be a tag"),
    (("org: testorg", "org: testorg\nversion: v1..2"), "'v1..2' cannot be a tag"),
    (("org: testorg", "org: testorg\nversion: x.lock"), "'x.lock' cannot be a tag"),
    (("      fp32: {", "      fp32-: {kind: fp32, from: base, recipe: finetune, target: x86-avx512}\n      fp32: {"),
     "the Hub refuses it"),
    (("      fp32: {", "      a--b: {kind: fp32, from: base, recipe: finetune, target: x86-avx512}\n      fp32: {"),
     "the Hub refuses it"),
    (("tiny-sentiment:", f"{'t' * 64}:", "      fp32: {", f"      {'v' * 40}: {{kind: fp32, from: base, "
      "recipe: finetune, target: x86-avx512}\n      fp32: {"), "maximum length is 96"),
    (("      fp32: {", "      family: {kind: fp32, from: base, recipe: finetune, target: x86-avx512}\n      fp32: {"),
     "'family' is reserved"),
    (("      fp32: {", "      qlora-4bit-adapter: {kind: fp32, from: base, recipe: finetune, target: x86-avx512}\n"
                      "      fp32: {"), "adapter repo id 'testorg/tiny-sentiment-qlora-4bit-adapter' is also"),
])
def test_values_a_later_stage_refuses_do_not_validate(tiny_zoo, edit, message):
    text = tiny_zoo.read_text()
    for old, new in zip(edit[::2], edit[1::2], strict=True):
        text = text.replace(old, new)
    tiny_zoo.write_text(text)
    result = _zoo(tiny_zoo.parent, "validate")
    assert result.exit_code == 1, result.output
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("depth", [33, 1100, 3000])
def test_deep_from_chains_are_one_line_and_plans_of_any_depth_are_iterative(tiny_zoo, depth):
    head, _ = tiny_zoo.read_text().split("    variants:\n")
    chain = "".join(f"      v{i}: {{kind: int8, from: {'v' + str(i - 1) if i else 'fp32'}, recipe: int8, "
                    "target: x86-avx512}\n" for i in range(depth - 1))
    tiny_zoo.write_text(head + "    variants:\n      fp32: {kind: fp32, from: base, recipe: finetune, "
                        "target: x86-avx512}\n" + chain)
    result = _zoo(tiny_zoo.parent, "validate")
    assert result.exit_code == 1
    line, = result.stderr.strip().splitlines()
    assert f"'from:' chain of {depth} builds from base (limit 32;" in line
    variants = {f"v{i}": type("V", (), {"from_": f"v{i - 1}" if i else "base"}) for i in range(depth)}
    assert plan._order(variants) == [f"v{i}" for i in range(depth)]  # no RecursionError at any depth


def _later_stages(project: Path) -> None:
    """Every stage after validate that runs without built artifacts, on a registry that validated."""
    loaded = registry.load(project / "registry.yaml")
    nodes = plan.make(loaded)
    assert len({n.hash for n in nodes}) == len(nodes), "two variants share an artifact"
    for args in (["plan"], ["list", "--json"], ["push", "--dry-run", "--all"], ["report", "--json"]):
        result = _zoo(project, *args)
        assert result.exit_code in (0, 1), (args, result.output)
        assert result.exit_code == 0 or len(result.stderr.strip().splitlines()) >= 1, args
    from huggingface_hub.utils import validate_repo_id

    from zoo import ids

    org = loaded.registry.org
    for n in nodes:
        validate_repo_id(ids.repo_id(org, n.model_id, n.variant_id))
        validate_repo_id(ids.adapter_repo_id(org, n.model_id, n.variant_id))
        validate_repo_id(ids.space_id(org, n.model_id))
        Store(project / ".zoo").repo(n.model_id, n.variant_id).mkdir(parents=True)  # no collision, no escape
    if loaded.registry.version:
        # one path component (the hub keeps refs/tags/<tag> as one name) that git accepts as a tag
        assert "/" not in loaded.registry.version
        git = subprocess.run(["git", "check-ref-format", f"refs/tags/{loaded.registry.version}"])
        assert git.returncode == 0, f"version {loaded.registry.version!r} validated but git refuses the tag"


def test_every_later_stage_runs_on_every_fixture_that_validates(tiny_zoo):
    """The tiny registry with each hostile value a tester tried; whatever validates must survive every stage."""
    from zoo.errors import ZooError

    base = tiny_zoo.read_text()
    variant = "      fp32: {kind: fp32, from: base, recipe: finetune, target: x86-avx512}\n"
    edits = [("org: testorg", f"org: testorg\nversion: {v}") for v in
             ("1.0", "2026.11.1", "v1_rc-2", "1.0/evil", "..", "-x", ".x", "x.", "a b", "x@{y}", "é", "x" * 129)]
    edits += [(variant, variant + f"      {v}: {{kind: int8, from: fp32, recipe: int8, target: x86-avx512}}\n")
              for v in ("int8-b", "x", "x-", "a--b", "9", "family", "qlora-4bit-adapter", "v" * 64, "int8")]
    edits += [("tiny-sentiment:", f"{m}:") for m in ("t" * 64, "t" * 40, "a-", "x--y", "demo")]
    edits += [("org: testorg", f"org: {o}") for o in ("o" * 64, "a-", "a--b")]
    validated = 0
    for i, edit in enumerate(edits):
        project = tiny_zoo.parent.parent / f"fixture-{i}"
        shutil.copytree(tiny_zoo.parent, project)
        (project / "registry.yaml").write_text(base.replace(*edit, 1))
        try:
            registry.load(project / "registry.yaml")
        except ZooError:
            continue
        validated += 1
        _later_stages(project)
    assert validated >= 6, "the fixtures should include valid ones too"
