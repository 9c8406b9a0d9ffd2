"""Benchmark: build the whole zoo from scratch in a throwaway store, then the no-op rebuild (everything skipped).

Prints each variant's build time, the full-build time, the no-op rebuild time and their ratio. Each timing covers
what `zoo build` does: load and validate the registry, plan (hash every variant), then build or skip.

    .venv/bin/python benchmarks/build.py                                  # the default zoo (many minutes on 2 cores)
    .venv/bin/python benchmarks/build.py --registry tests/…/registry.yaml  # any other project, e.g. the tiny zoo
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "registry.yaml", help="registry.yaml to build")
    parser.add_argument("--all", action="store_true", help="include models marked default: false")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store and print where it is")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="zoo-bench-build-"))
    os.environ["ZOO_HOME"] = str(home)  # a fresh store: nothing is built yet
    try:
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
