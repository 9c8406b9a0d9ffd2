#!/usr/bin/env bash
# Does a refactor change what the zoo builds? Builds and evaluates the tiny text zoo (every text technique) with
# two git revisions of modelzoo and compares, per variant, the weight files' sha256 (from provenance), the per-row
# test predictions and the metrics. Usage: benchmarks/same_artifacts.sh OLD_REV [NEW_REV]   (NEW_REV: the work tree)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD; py=$repo/.venv/bin/python; out=$(mktemp -d)
git worktree add -q --detach "$out/old-tree" "$1"
new_tree=$repo
if [ -n "${2:-}" ]; then git worktree add -q --detach "$out/new-tree" "$2"; new_tree=$out/new-tree; fi
trap 'git worktree remove --force "$out/old-tree"; [ -d "$out/new-tree" ] && git worktree remove --force "$out/new-tree"' EXIT
for side in old new; do
  tree=$out/old-tree; [ $side = new ] && tree=$new_tree
  mkdir -p "$out/$side"
  (cd "$out/$side" && export PYTHONPATH=$tree ZOO_THREADS=1 &&
   PYTHONPATH=$tree:$tree/tests $py -c "from pathlib import Path; from tiny import make_tiny_zoo; make_tiny_zoo(Path('.'))" &&
   $py -m zoo build > build.log 2>&1 && $py -m zoo eval > eval.log 2>&1)
done
$py - "$out" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
def read(side):
    arts = root / side / ".zoo" / "artifacts"
    res = {json.loads(p.read_text())["variant"]: json.loads(p.read_text()) for p in arts.glob("*.results.json")}
    prov = {json.loads(p.read_text())["variant"]: json.loads(p.read_text()) for p in arts.glob("*/provenance.json")}
    return {v: ({k: h for k, h in prov[v]["files"].items() if k.endswith((".safetensors", ".onnx", ".bin"))},
                (res[v].get("predictions") or {}).get("preds"), res[v]["metrics"]) for v in prov}
old, new = read("old"), read("new")
for v in sorted(old):
    w, p, m = (a == b for a, b in zip(old[v], new.get(v, (None, None, None))))
    print(f"{v:12s} weights {'identical' if w else 'DIFFER'}, predictions {'identical' if p else 'DIFFER'} "
          f"({len(old[v][1] or [])} rows), metrics {'identical' if m else 'DIFFER'}: {old[v][2]}")
PY
