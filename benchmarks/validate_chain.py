"""Time of `zoo validate` on a registry whose variants form one long 'from:' chain, at two depths side by side.

    python benchmarks/validate_chain.py [--depths 300 3000] [--repeats 3]

Each registry is the tiny test project with a chain of int8 variants under one fp32; validation refuses it (the
chain is deeper than the limit) after checking every variant. Prints the best of ``--repeats`` in-process
``registry.load`` times per depth and their ratio: about the ratio of the depths when validation is linear.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def chain_registry(root: Path, depth: int) -> Path:
    from tiny import REGISTRY, make_tiny_zoo

    make_tiny_zoo(root)
    head = REGISTRY.split("    variants:\n")[0]
    lines = ["    variants:\n", "      v0: {kind: fp32, from: base, recipe: finetune, target: x86-avx512}\n"]
    lines += [f"      v{i}: {{kind: int8, from: v{i - 1}, recipe: int8, target: x86-avx512}}\n"
              for i in range(1, depth)]
    path = root / f"deep{depth}.yaml"
    path.write_text(head + "".join(lines))
    return path


def best_time(path: Path, repeats: int) -> tuple[float, str]:
    from zoo import registry
    from zoo.errors import ZooError

    times, outcome = [], ""
    for _ in range(repeats):
        t = time.perf_counter()
        try:
            registry.load(path)
            outcome = "valid"
        except ZooError as e:
            outcome = str(e).splitlines()[0].split(": ", 2)[-1][:70]
        times.append(time.perf_counter() - t)
    return min(times), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs=2, default=[300, 3000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zoo-chain-"))
    results = {}
    for depth in args.depths:
        results[depth] = best_time(chain_registry(root, depth), args.repeats)
        print(f"depth {depth:>6}: {results[depth][0]:.3f} s  ({results[depth][1]})")
    small, large = args.depths
    print(f"time ratio {results[large][0] / results[small][0]:.1f}x for a depth ratio of {large / small:.1f}x")


if __name__ == "__main__":
    main()
