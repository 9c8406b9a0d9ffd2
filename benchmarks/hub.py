"""Benchmark: the embedded hub over loopback — push and pull MB/s, HTTP requests per repo for a no-op push, and
the no-op `zoo run`.

It needs the project's store with the default family evaluated, carded and staged (what `zoo run` leaves; run it
first from a clean clone). Then, side by side in one run:

1. push every staged repo of the selected variants (and the Space and family card) into a fresh, empty hub
   (a temp folder) through the embedded server on 127.0.0.1: bytes sent / seconds;
2. push again (nothing changed): HTTP requests per repo, counted by the server (goal ≤ 2);
3. pull every variant repo into fresh folders: bytes received / seconds, and the ratio pull/push;
4. a no-op `zoo run` of the project itself in a fresh process (goal ≤ 3 s), against the time `zoo --help` takes to
   start, so the interpreter and import cost is visible.

    .venv/bin/python benchmarks/hub.py                                   # the default family (after `zoo run`)
    .venv/bin/python benchmarks/hub.py --registry path/to/registry.yaml  # any other project
    .venv/bin/python benchmarks/hub.py --synthetic 90                    # no project: 3 repos like a family's
                                                                         # (90 MB of weights + small files each)
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "registry.yaml")
    parser.add_argument("--skip-run", action="store_true", help="leave out the no-op `zoo run` timing")
    parser.add_argument("--synthetic", type=int, metavar="MB", help="push/pull 3 generated repos of MB each instead")
    args = parser.parse_args(argv)
    if args.synthetic:
        return synthetic(args.synthetic)

    from rich.console import Console

    from zoo import hub, plan, registry
    from zoo.hub.hf import HfHub
    from zoo.hub.publish import staged_repos
    from zoo.hub.server import HubServer
    from zoo.store import Store

    loaded = registry.load(args.registry)
    store = Store.for_registry(loaded.path)
    nodes = plan.select(plan.make(loaded), loaded.select(None, None, False))
    quiet = Console(file=io.StringIO())
    items = staged_repos(loaded, store, nodes, allow_gate_failure=False, say=lambda _: None)
    if not items:
        print(f"nothing is staged in {store.root}: run `zoo run` first", file=sys.stderr)
        return 1
    total = sum(folder_bytes(i.folder) for i in items)

    with tempfile.TemporaryDirectory(prefix="zoo-hub-bench-") as tmp, HubServer(Path(tmp) / "hub") as server:
        client = HfHub(server.token, endpoint=server.url, name="local", cache_dir=Path(tmp) / "cache")
        t = time.perf_counter()
        rows = hub.push(loaded, store, nodes, hub=client, console=quiet)
        push_s = time.perf_counter() - t
        sent = sum(r.bytes for r in rows)

        server.requests.clear()
        t = time.perf_counter()
        again = hub.push(loaded, store, nodes, hub=client, console=quiet)
        noop_push_s = time.perf_counter() - t
        assert all(r.commit is None for r in again), "the second push made a commit"
        per_repo = {f"{r.repo_type}:{r.repo_id}": server.requests[f"{r.repo_type}:{r.repo_id}"] for r in again}

        variant_repos = [i for i in items if i.repo_type == "model"]
        pulled = 0
        t = time.perf_counter()
        for i in variant_repos:
            dest = client.snapshot(i.repo_id, i.repo_type, None, Path(tmp) / "pulls" / i.repo_id)
            pulled += folder_bytes(dest)
        pull_s = time.perf_counter() - t
        shutil.rmtree(Path(tmp) / "pulls", ignore_errors=True)

    mb = 1e6
    print(f"embedded hub over loopback, {len(items)} repos of {', '.join(sorted({n.model_id for n in nodes}))} "
          f"({total / mb:.1f} MB staged)")
    print(f"  push (empty hub):  {sent / mb:8.1f} MB in {push_s:6.2f} s = {sent / mb / push_s:7.1f} MB/s")
    print(f"  pull ({len(variant_repos)} model repos): {pulled / mb:8.1f} MB in {pull_s:6.2f} s = "
          f"{pulled / mb / pull_s:7.1f} MB/s  (pull/push speed ratio {(pulled / pull_s) / (sent / push_s):.2f})")
    worst = max(per_repo.values())
    print(f"  no-op push: {noop_push_s:.2f} s, HTTP requests per repo: max {worst}, "
          f"mean {sum(per_repo.values()) / len(per_repo):.1f} (goal <= 2: {'met' if worst <= 2 else 'NOT met'})")
    for repo, n in per_repo.items():
        print(f"    {n}  {repo}")

    if not args.skip_run:
        zoo = [sys.executable, "-m", "zoo"]
        env = {**os.environ, "COLUMNS": "200"}
        t = time.perf_counter()
        subprocess.run([*zoo, "--help"], cwd=loaded.root, env=env, capture_output=True, check=True)
        start_s = time.perf_counter() - t
        t = time.perf_counter()
        proc = subprocess.run([*zoo, "run", "--registry", str(args.registry)], cwd=loaded.root, env=env,
                              capture_output=True, text=True)
        run_s = time.perf_counter() - t
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        print(f"  no-op `zoo run`: {run_s:.2f} s (goal <= 3 s: {'met' if run_s <= 3 else 'NOT met'}); "
              f"`zoo --help` alone {start_s:.2f} s (ratio {run_s / start_s:.1f}x)")
        stages = [line for line in proc.stderr.splitlines() if line.startswith("done:")]
        if stages:
            print(f"    {stages[-1]}")
    return 0


def synthetic(mb_each: int) -> int:
    """Push, no-op push and pull of three generated repos (random weights + config/tokenizer-sized files)."""
    from zoo.hub import ops
    from zoo.hub.hf import HfHub
    from zoo.hub.publish import Staged, push_one
    from zoo.hub.server import HubServer

    with tempfile.TemporaryDirectory(prefix="zoo-hub-bench-") as tmp:
        root = Path(tmp)
        items = []
        for n in range(3):
            folder = root / "staged" / f"v{n}"
            folder.mkdir(parents=True)
            (folder / "model.safetensors").write_bytes(os.urandom(mb_each * 1_000_000))
            (folder / "config.json").write_text(f'{{"a": {n}}}')
            (folder / "tokenizer.json").write_bytes(os.urandom(200_000).hex().encode())
            (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# v\n")
            items.append(Staged(f"bench/v{n}", "model", folder, "bench", f"v{n}", False))
        total = sum(folder_bytes(i.folder) for i in items)
        with HubServer(root / "hub") as server:
            client = HfHub(server.token, endpoint=server.url, name="local", cache_dir=root / "cache")
            t = time.perf_counter()
            for i in items:
                push_one(client, i, "push", "1.0.0", False, lambda _: None)
            push_s = time.perf_counter() - t
            server.requests.clear()
            for i in items:
                assert push_one(client, i, "push", "1.0.0", False, lambda _: None).commit is None
            per_repo = [server.requests[f"model:{i.repo_id}"] for i in items]
            t = time.perf_counter()
            for i in items:
                client.snapshot(i.repo_id, "model", None, root / "pulls" / i.repo_id)
            pull_s = time.perf_counter() - t
        assert all(ops.plan(root / "pulls" / i.repo_id, {}).sizes == ops.plan(i.folder, {}).sizes for i in items)
    mb = 1e6
    print(f"embedded hub over loopback, 3 generated repos ({total / mb:.1f} MB)")
    print(f"  push: {total / mb / push_s:7.1f} MB/s ({push_s:.2f} s)   pull: {total / mb / pull_s:7.1f} MB/s "
          f"({pull_s:.2f} s)   pull/push speed ratio {push_s / pull_s:.2f}")
    print(f"  no-op push: HTTP requests per repo {per_repo} (goal <= 2: {'met' if max(per_repo) <= 2 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
