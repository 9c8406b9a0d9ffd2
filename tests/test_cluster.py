"""The Ray executor and the shared store, against real parts started here: an S3-compatible server (moto) on
127.0.0.1 and a local Ray cluster of two nodes, the second offering an ``rpi5`` resource that stands in for a board."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from zoo.errors import ZooError
from zoo.remote_store import RemoteStore
from zoo.store import Store

ray = pytest.importorskip("ray")
BUCKET = "zoo-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1 with an empty bucket; the environment points boto and s3fs at it."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": url, "FSSPEC_S3_ENDPOINT_URL": url}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fsspec

    fsspec.config.conf.setdefault("s3", {})["endpoint_url"] = url
    fs = fsspec.filesystem("s3", endpoint_url=url, skip_instance_cache=True)
    fs.mkdir(BUCKET)
    yield url
    server.stop()
    fsspec.config.conf.get("s3", {}).pop("endpoint_url", None)
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _artifact(store: Store, h: str) -> None:
    """A small artifact folder in the store's layout: two files and the provenance that lists their sha256."""
    from zoo.sources import sha256_file

    d = store.artifact(h)
    (d / "sub").mkdir(parents=True)
    (d / "model.bin").write_bytes(os.urandom(200_000))
    (d / "sub" / "config.json").write_text('{"a": 1}')
    files = {p.relative_to(d).as_posix(): sha256_file(p) for p in sorted(d.rglob("*")) if p.is_file()}
    (d / "provenance.json").write_text(json.dumps({"hash": h, "files": files}))


def test_s3_store_one_artifact_from_racing_uploads_and_verified_fetch(s3, tmp_path):
    url = f"s3://{BUCKET}/race"
    h = "0123456789abcdef"
    stores = [Store(tmp_path / f"worker{i}") for i in range(4)]
    for s in stores:
        _artifact(s, h)  # four workers built the same hash (their bytes differ, as two real builds' might)
    won = [False] * len(stores)

    def put(i: int) -> None:
        won[i] = RemoteStore(url).put(h, stores[i])

    threads = [threading.Thread(target=put, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    remote = RemoteStore(url)
    uploads = remote.fs.ls(f"{BUCKET}/race/builds/{h}")
    assert won.count(True) == 1 and len(uploads) == 1, (won, uploads)

    fetched = remote.fetch(h, Store(tmp_path / "other-node"))
    winner = stores[won.index(True)].artifact(h)
    assert (fetched / "model.bin").read_bytes() == (winner / "model.bin").read_bytes()

    # a corrupted object is refused on fetch, and nothing half-fetched is left behind
    marker = json.loads(remote.fs.cat_file(f"{BUCKET}/race/builds/{h}.json"))
    remote.fs.pipe_file(f"{BUCKET}/race/builds/{h}/{marker['upload']}/model.bin", b"tampered")
    third = Store(tmp_path / "third-node")
    with pytest.raises(ZooError, match="model.bin does not match its sha256"):
        RemoteStore(url).fetch(h, third)
    assert not third.is_built(h) and not any(third.artifact(h).parent.glob("*"))


def test_killed_upload_leaves_no_artifact(s3, tmp_path):
    """Files uploaded without their marker (a worker killed before the final put) do not count."""
    url = f"s3://{BUCKET}/killed"
    h = "fedcba9876543210"
    local = Store(tmp_path / "w")
    _artifact(local, h)
    remote = RemoteStore(url)
    remote.fs.put_file(str(local.artifact(h) / "model.bin"), f"{BUCKET}/killed/builds/{h}/deadbeef/model.bin")
    assert not remote.has(h)
    with pytest.raises(ZooError, match="not in the store"):
        remote.fetch(h, Store(tmp_path / "n"))


BOARD_TARGET = "  rpi5: {device: cpu, arch: aarch64, board: Raspberry Pi 5, resources: {rpi5: 1}}\n"


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes started with ``ray start --block``: a head with 1 CPU, and a node with 1 CPU and the custom
    resource ``rpi5``; stopped by ending exactly these two processes (``ray stop`` would end every Ray here)."""
    import subprocess
    import sys

    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    common = ["--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    procs = [subprocess.Popen([ray_cli, "start", "--head", "--port", str(port), "--include-dashboard", "false",
                               "--ray-client-server-port", str(_free_port()), *common], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert procs[0].poll() is None, "ray start --head exited"
            time.sleep(0.5)
        procs.append(subprocess.Popen([ray_cli, "start", "--address", address, "--resources", '{"rpi5": 1}',
                                       *common], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        from zoo import cluster as zoo_cluster

        zoo_cluster.connect(address, Path(tempfile.mkdtemp(prefix="zoo-ray-wd-")))
        while time.time() < deadline and sum(n["Alive"] for n in ray.nodes()) < 2:
            time.sleep(0.5)
        assert sum(n["Alive"] for n in ray.nodes()) == 2, "the second Ray node did not join"
        yield address
    finally:
        ray.shutdown()
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)


def _board_zoo(tiny_zoo: Path) -> Path:
    text = tiny_zoo.read_text().replace("targets:\n", "targets:\n" + BOARD_TARGET, 1)
    # fp32 and the int8 made from it, int8 for the board
    drop = ("w16a16:", "qlora-4bit:", "distilled:")
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith(drop)]
    text = "\n".join(lines).replace("recipe: int8, target: x86-avx512", "recipe: int8, target: rpi5") + "\n"
    tiny_zoo.write_text(text)
    return tiny_zoo


def _kill_when_running(title: str, seconds: float, killed: list[int]) -> None:
    """Kill -9 the Ray worker whose process title is ``title`` once it has run for ``seconds``."""
    import psutil

    deadline = time.time() + 300
    while time.time() < deadline and not killed:
        for p in psutil.process_iter(["pid", "cmdline", "create_time"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if cmd.startswith(title):
                time.sleep(seconds)
                p.kill()
                killed.append(p.info["pid"])
                return
        time.sleep(0.2)


@pytest.mark.slow
def test_ray_build_survives_a_killed_worker_and_measures_on_the_board_node(s3, cluster, tiny_zoo, monkeypatch):
    from zoo import build, plan, registry
    from zoo import cluster as zoo_cluster

    reg = _board_zoo(tiny_zoo)
    monkeypatch.setenv("ZOO_STORE", f"s3://{BUCKET}/zoo")
    monkeypatch.setenv("ZOO_THREADS", "1")
    loaded = registry.load(reg)
    nodes = plan.make(loaded)
    assert [n.key for n in nodes] == ["tiny-sentiment:fp32", "tiny-sentiment:int8"]
    store = Store.for_registry(reg)

    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_running, args=("ray::build tiny-sentiment:fp32", 2.0, killed))
    killer.start()
    outcomes = zoo_cluster.build(loaded, store, nodes, address=cluster, log=lambda *_: None)
    killer.join(timeout=10)
    assert killed, "the fp32 build's worker was never seen running"
    assert [o.status for o in outcomes] == ["built", "built"]

    clean = Store(tiny_zoo.parent / "clean")
    build.build(loaded, clean, nodes, log=lambda *_: None)
    for n in nodes:
        a, b = (json.loads((s.artifact(n.hash) / "provenance.json").read_text()) for s in (store, clean))
        assert a["hash"] == b["hash"] == n.hash
        assert a["files"] == b["files"], f"{n.key}: the retried cluster build differs from a clean build"

    results = zoo_cluster.evaluate(loaded, store, nodes, address=cluster, log=lambda *_: None)
    board = results["tiny-sentiment:int8"]
    assert board["machine"]["node_resources"].get("rpi5") == 1
    assert board["perf"]["on_target"] is True and board["perf"]["note"].startswith("measured on target rpi5")
    assert results["tiny-sentiment:int8"]["gate"]["of"] == "fp32"
    assert store.results(nodes[1].hash).is_file()


def test_a_variant_no_node_can_host_is_reported_not_hung(s3, cluster, tiny_zoo, monkeypatch):
    from zoo import cluster as zoo_cluster
    from zoo import plan, registry

    reg = _board_zoo(tiny_zoo)
    monkeypatch.setenv("ZOO_STORE", f"s3://{BUCKET}/unhostable")
    monkeypatch.setenv("ZOO_THREADS", "8")  # every node has 1 CPU
    loaded = registry.load(reg)
    start = time.perf_counter()
    with pytest.raises(ZooError) as e:
        zoo_cluster.build(loaded, Store.for_registry(reg), plan.make(loaded), address=cluster,
                          log=lambda *_: None)
    assert time.perf_counter() - start < 60
    lines = str(e.value).splitlines()
    assert lines[0].startswith("tiny-sentiment:fp32: no node of the cluster can host its build (needs CPU=8")
    assert lines[1] == "tiny-sentiment:int8: not built because its parent tiny-sentiment:fp32 was not"
    shutil.rmtree(reg.parent / ".zoo", ignore_errors=True)


def test_local_path_store_round_trip(tmp_path):
    """The default shared store is a plain folder (one machine, or a shared filesystem)."""
    h = "00112233aabbccdd"
    worker = Store(tmp_path / "worker")
    _artifact(worker, h)
    shared = RemoteStore(str(tmp_path / "shared"))
    assert shared.put(h, worker) and not shared.put(h, worker)
    shared.put_results(h, {"hash": h})
    other = Store(tmp_path / "other")
    got = shared.fetch(h, other)
    assert (got / "sub" / "config.json").read_text() == '{"a": 1}'
    assert shared.fetch_results(h, other) == {"hash": h} and other.results(h).is_file()


def test_cli_build_on_ray_reports_what_no_node_can_host(s3, cluster, tiny_zoo, monkeypatch):
    from typer.testing import CliRunner

    from zoo.cli import app

    reg = _board_zoo(tiny_zoo)
    monkeypatch.setenv("ZOO_STORE", f"s3://{BUCKET}/cli")
    monkeypatch.setenv("ZOO_THREADS", "4")
    result = CliRunner().invoke(app, ["build", "--registry", str(reg), "--executor", "ray", "--address", cluster])
    assert result.exit_code == 1, result.output
    assert "tiny-sentiment:fp32: no node of the cluster can host its build (needs CPU=4)" in result.output
    assert "Traceback" not in result.output
