"""The detection family's report: every built variant on the same val2017 images, paired bootstrap ratios to fp32,
and the boxes of each variant on one real val image side by side.

``python -m zoo.families.object_detection.report [MODEL] [--resamples N] [--out DIR]`` (after ``zoo run MODEL``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from zoo.families.object_detection.metrics import CocoEval

THRESHOLD = 0.3  # boxes drawn in the figure


def family_report(loaded, store, model_id: str, resamples: int = 200, seed: int = 0) -> dict:
    """Scores, paired ratio intervals (variant / fp32 over the same image resamples), size and p50 per variant."""
    from zoo import plan
    from zoo.data import load_splits
    from zoo.families.object_detection.family import ObjectDetection, detect_all
    from zoo.status import read_results

    model = loaded.model(model_id)
    field = f"models.{model_id}.dataset"
    splits = load_splits(model, loaded.root, field)
    rows = ObjectDetection().test_rows(model, loaded.root, field)
    nodes = [n for n in plan.make(loaded) if n.model_id == model_id and store.is_built(n.hash)]
    evals = {n.variant_id: CocoEval(rows, detect_all(store.artifact(n.hash), rows), len(splits.label_names))
             for n in nodes}
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(rows), len(rows)) for _ in range(resamples)]
    ref = evals.get("fp32")
    ref_draws = [ref.scores(d) for d in draws] if ref else None
    out = {"model": model_id, "images": len(rows), "resamples": resamples, "confidence": 0.95, "variants": {}}
    for n in nodes:
        ev = evals[n.variant_id]
        point = ev.scores()
        res = read_results(store, n) or {}
        lat = ((res.get("perf") or {}).get("latency_ms") or {}).get("batch_1") or {}
        art = store.artifact(n.hash)
        row = {"kind": n.kind, "target": n.target, "map": point["map"], "map50": point["map50"],
               "size_mb": round((art / "model.onnx").stat().st_size / 1e6, 1), "p50_ms": lat.get("p50"),
               "gate": (res.get("gate") or {}).get("passed")}
        if ref is not None:
            for metric in ("map", "map50"):
                base = ref.scores()[metric]
                ratios = [ev.scores(d)[metric] / r[metric] if r[metric] else 1.0
                          for d, r in zip(draws, ref_draws, strict=True)]
                lo, hi = np.percentile(ratios, [2.5, 97.5])
                row[f"{metric}_ratio"] = point[metric] / base if base else 1.0
                row[f"{metric}_ratio_ci"] = [float(lo), float(hi)]
        values = [ev.scores(d)["map"] for d in draws]
        row["map_ci"] = [float(v) for v in np.percentile(values, [2.5, 97.5])]
        out["variants"][n.variant_id] = row
    return out


def boxes_figure(loaded, store, model_id: str, path: Path, image_index: int | None = None) -> Path:
    """One val image (the one with the most objects, or ``image_index``), each variant's boxes side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo import plan
    from zoo.data import load_splits
    from zoo.families.object_detection.model import Detector, draw

    model = loaded.model(model_id)
    test = load_splits(model, loaded.root, f"models.{model_id}.dataset").test
    sample = test[image_index] if image_index is not None else max(test, key=lambda s: len(s.boxes))
    image = sample.image()
    nodes = [n for n in plan.make(loaded) if n.model_id == model_id and store.is_built(n.hash)]
    fig, axes = plt.subplots(1, len(nodes), figsize=(4 * len(nodes), 3.6), squeeze=False)
    for ax, n in zip(axes[0], nodes, strict=True):
        det = Detector(store.artifact(n.hash))
        found = det.detect([image], THRESHOLD)[0]
        ax.imshow(draw(image, found, det.config.get("label_names") or [], THRESHOLD))
        ax.set_title(f"{n.variant_id} ({len(found.boxes)} boxes)", fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{model_id}: boxes scoring ≥ {THRESHOLD} on val2017 {sample.path.stem}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown(report: dict) -> str:
    def ci(pair):
        return f"[{pair[0]:.3f}, {pair[1]:.3f}]" if pair else "—"

    lines = [f"{report['images']} val2017 images; 95% percentile bootstrap over images ({report['resamples']} "
             "resamples), ratios paired (variant and fp32 on the same resampled images).", "",
             "| variant | kind | mAP@0.5:0.95 [95% CI] | mAP@0.5 | mAP ratio to fp32 [95% CI] | mAP@0.5 ratio [95% CI] "
             "| MB | p50 ms | target | gate |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["variants"].items():
        gate = {True: "pass", False: "FAIL", None: "—"}[r["gate"]]
        p50 = f"{r['p50_ms']:.1f}" if r["p50_ms"] else "—"
        lines.append(f"| {name} | {r['kind']} | {r['map']:.4f} {ci(r['map_ci'])} | {r['map50']:.4f} | "
                     f"{r.get('map_ratio', 1):.3f} {ci(r.get('map_ratio_ci'))} | {r.get('map50_ratio', 1):.3f} "
                     f"{ci(r.get('map50_ratio_ci'))} | {r['size_mb']} | {p50} | {r['target']} | {gate} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from zoo import registry
    from zoo.cli import _store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="ssd-mobilenetv2-coco128")
    parser.add_argument("--registry", default="registry.yaml")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--out", default=None, help="folder for report.json/.md and boxes.png (default: the "
                                                    "store's reports folder)")
    args = parser.parse_args()
    loaded = registry.load(args.registry)
    store = _store(loaded)
    out = Path(args.out) if args.out else store.reports(args.model)
    out.mkdir(parents=True, exist_ok=True)
    rep = family_report(loaded, store, args.model, args.resamples)
    (out / "detection.json").write_text(json.dumps(rep, indent=2))
    (out / "detection.md").write_text(markdown(rep))
    boxes_figure(loaded, store, args.model, out / "boxes.png")
    print(markdown(rep))
    print(f"written: {out / 'detection.md'}, {out / 'boxes.png'}")


if __name__ == "__main__":
    main()
