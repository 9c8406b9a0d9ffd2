"""The int8 recipe on one fp32 parent, exported by torch.onnx (torchscript and dynamo) and, when given, an int8 artifact
built earlier (e.g. by the optimum-onnx exporter of the previous stack), all evaluated side by side in one run: test
accuracy with its 95% Wilson interval, the ratio to the fp32 parent (the gate is ≥ 0.99), size and nodes kept fp32.

    python benchmarks/int8_export.py --fp32-dir DIR [--other-int8 DIR] [--registry registry.yaml]

DIR is a built ``minilm-sentiment:fp32`` artifact (``.zoo/artifacts/<hash>``). Nothing is written outside a
temporary folder.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

MODEL, VARIANT = "minilm-sentiment", "int8"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def build_int8(loaded, fp32_dir: Path, out: Path, exporter: str) -> dict:
    from zoo.data import load_splits
    from zoo.techniques.base import BuildContext

    model = loaded.model(MODEL)
    variant = model.variants[VARIANT]
    recipe = loaded.recipe_of(variant)
    params = recipe.params.model_copy(update={"exporter": exporter})
    out.mkdir(parents=True)
    ctx = BuildContext(model_id=MODEL, variant_id=VARIANT, model=model, variant=variant,
                       target=loaded.registry.targets[variant.target], recipe_name=recipe.name, params=params,
                       parent_dir=fp32_dir, parent_kind="fp32", out_dir=out,
                       splits=lambda: load_splits(model, loaded.root, "dataset"), progress=None, root=loaded.root,
                       log=lambda *_: None)
    return recipe.technique.build(ctx)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from zoo import registry
    from zoo.data import load_splits
    from zoo.families.text_classification.loaders import load_classifier

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", type=Path, default=Path("registry.yaml"))
    ap.add_argument("--fp32-dir", type=Path, required=True)
    ap.add_argument("--other-int8", type=Path, default=None)
    args = ap.parse_args(argv)
    loaded = registry.load(args.registry)
    test = load_splits(loaded.model(MODEL), loaded.root, "dataset").test
    seq = loaded.model(MODEL).evaluation.seq_len
    labels = np.array(test.labels)
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-export-") as tmp:
        folders: dict[str, tuple[Path, str]] = {"fp32 parent (PyTorch)": (args.fp32_dir, "-")}
        for exporter in ("torchscript", "dynamo"):
            start = time.perf_counter()
            extra = build_int8(loaded, args.fp32_dir, Path(tmp) / exporter, exporter)
            folders[f"int8, torch.onnx {exporter}"] = (Path(tmp) / exporter, str(extra["quantization"]["excluded"]))
            print(f"built int8 ({exporter}) in {time.perf_counter() - start:.0f} s", flush=True)
        if args.other_int8:
            folders[f"int8, given ({args.other_int8.name})"] = (args.other_int8, "-")
        for name, (folder, kept) in folders.items():
            clf = load_classifier(folder)
            correct = int((clf.predict(test.inputs, seq).argmax(-1) == labels).sum())
            mb = sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".onnx", ".safetensors")) / 1e6
            rows.append((name, correct, mb, kept))
    n = len(labels)
    ref = rows[0][1] / n
    print(f"{MODEL}: {n} test rows, seq {seq}; accuracy [95% Wilson interval]; ratio = accuracy / fp32 parent's")
    for name, correct, mb, kept in rows:
        lo, hi = wilson(correct, n)
        print(f"{name:34} acc {correct / n:.4f} [{lo:.4f}, {hi:.4f}]  /fp32 {correct / n / ref:.4f}  "
              f"{mb:6.1f} MB  nodes kept fp32 {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
