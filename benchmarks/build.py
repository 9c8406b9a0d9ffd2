"""Benchmark: build the whole zoo from scratch in a throwaway store, then the no-op rebuild (everything skipped).

Prints each variant's build time, the full-build time, the no-op rebuild time and their ratio. Each timing covers
what `zoo build` does: load and validate the registry, plan (hash every variant), then build or skip.

    .venv/bin/python benchmarks/build.py                                  # the default zoo (many minutes on 2 cores)
    .venv/bin/python benchmarks/build.py --registry tests/…/registry.yaml  # any other project, e.g. the tiny zoo
    .venv/bin/python benchmarks/build.py --executor ray   # in-process vs a local Ray cluster, and the DAG's bound

With ``--executor ray`` it builds the same variants twice from empty stores, in-process and as Ray tasks on a local
Ray instance (or ``--address``), and prints both wall times beside the critical-path bound: the longest parent→child
chain of the in-process per-variant times, i.e. the wall time with unlimited workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_build(registry_path: Path, include_nondefault: bool) -> tuple[float, list]:
    """One `zoo build` of every (default) model's variants: load, plan, build; returns (seconds, outcomes)."""
    from zoo import build, plan, registry
    from zoo.store import Store

    start = time.perf_counter()
    loaded = registry.load(registry_path)
    nodes = plan.select(plan.make(loaded), loaded.select(None, None, include_nondefault))
    outcomes = build.build(loaded, Store.for_registry(loaded.path), nodes, log=lambda *_: None)
    return time.perf_counter() - start, outcomes


def critical_path(outcomes: list) -> float:
    """The longest chain of build seconds from a root to a leaf of the DAG (the bound with unlimited workers)."""
    finish: dict[str, float] = {}
    for o in outcomes:  # plan order: parents first
        parent = f"{o.node.model_id}:{o.node.parent}"
        finish[o.node.key] = finish.get(parent, 0.0) + o.seconds
    return max(finish.values(), default=0.0)


def ray_vs_local(registry_path: Path, include_nondefault: bool, address: str | None) -> int:
    from zoo import cluster, plan, registry
    from zoo.store import Store

    local_s, outcomes = timed_build(registry_path, include_nondefault)
    os.environ["ZOO_HOME"] = tempfile.mkdtemp(prefix="zoo-bench-ray-")
    cluster.connect(address, registry_path.parent)  # joining the cluster is not part of the timing
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    start = time.perf_counter()
    loaded = registry.load(registry_path)
    nodes = plan.select(plan.make(loaded), loaded.select(None, None, include_nondefault))
    remote = cluster.build(loaded, Store.for_registry(loaded.path), nodes, address=address, log=lambda *_: None)
    ray_s = time.perf_counter() - start
    bound = critical_path(outcomes)
    print(f"{'variant':<36} {'in-process s':>12} {'ray task s':>11}")
    for a, b in zip(outcomes, remote, strict=True):
        print(f"{a.node.key:<36} {a.seconds:12.2f} {b.seconds:11.2f}")
    print(f"\nin-process build:     {local_s:9.2f} s  ({len(outcomes)} variants, one after another)")
    print(f"ray cluster build:    {ray_s:9.2f} s  ({cpus:g} CPUs in the cluster, ZOO_THREADS="
          f"{os.environ.get('ZOO_THREADS', '1 (default on ray)')})")
    print(f"critical-path bound:  {bound:9.2f} s  (longest parent→child chain of the in-process times)")
    print(f"ratio ray/in-process: {ray_s / local_s:.3f};  bound/in-process: {bound / local_s:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "registry.yaml", help="registry.yaml to build")
    parser.add_argument("--all", action="store_true", help="include models marked default: false")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store and print where it is")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="ray: compare in-process with a Ray cluster and print the critical-path bound")
    parser.add_argument("--address", help="the Ray cluster to use (default: start a local Ray instance)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="zoo-bench-build-"))
    os.environ["ZOO_HOME"] = str(home)  # a fresh store: nothing is built yet
    try:
        if args.executor == "ray":
            return ray_vs_local(args.registry.resolve(), args.all, args.address)
        full, outcomes = timed_build(args.registry.resolve(), args.all)
        print(f"{'variant':<36} {'status':<8} {'seconds':>9}")
        for o in outcomes:
            print(f"{o.node.key:<36} {o.status:<8} {o.seconds:9.2f}")
        noop, again = timed_build(args.registry.resolve(), args.all)
        rebuilt = [o.node.key for o in again if o.status != "skipped"]
        print(f"\nfull build:      {full:9.2f} s  ({len(outcomes)} variants)")
        print(f"no-op rebuild:   {noop:9.2f} s  ({len(again) - len(rebuilt)} skipped)")
        print(f"ratio no-op/full: {noop / full:.4f}  (full is {full / noop:.0f}x the no-op)")
        if rebuilt:
            print(f"error: the no-op rebuild built {', '.join(rebuilt)} again", file=sys.stderr)
            return 1
    finally:
        if args.keep:
            print(f"store kept at {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
