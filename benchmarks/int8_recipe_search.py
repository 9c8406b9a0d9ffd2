"""How the default family's int8 recipe was chosen: configurations, then per-node sensitivity, measured side by side.

On the built fp32 variant (``zoo build minilm-sentiment:fp32``), exported once to ONNX:

1. ``configs``: quantizes it several ways through the zoo's own post-export step (``quantize_exported``: optional
   ONNX Runtime bert fusions, dynamic or static, per-channel or per-tensor) and prints, for each, top-1 agreement and
   mean |Δlogit| against the fp32 graph on 500 *training* rows (the test split stays unseen by the choice) and the
   median latency at batch 1 and 8 (seq 128), all timed interleaved in this process over ``--rounds`` rounds;
2. ``sensitivity``: for the fused dynamic recipe, keeps one node at a time in fp32 (each Attention, each MatMul, by
   op type and position) and prints how much that recovers, so exclusions are chosen by measurement.

Run: ``.venv/bin/python benchmarks/int8_recipe_search.py configs|sensitivity [--registry registry.yaml]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from zoo import plan, registry
from zoo.data import load_splits
from zoo.store import Store
from zoo.techniques import _onnx, int8

ROOT = Path(__file__).resolve().parent.parent
SEL = slice(200, 700)  # training rows used to compare graphs (never the test split)
CONFIGS = {
    "dynamic, per-channel, MatMul (unfused)": dict(mode="dynamic", per_channel=True, op_types=["MatMul"]),
    "fused, dynamic, per-channel, MatMul+Attention": dict(mode="dynamic", per_channel=True, fuse="bert",
                                                           op_types=["MatMul", "Attention"]),
    "fused, dynamic, per-tensor, MatMul+Attention": dict(mode="dynamic", per_channel=False, fuse="bert",
                                                          op_types=["MatMul", "Attention"]),
    "fused, dynamic, per-channel, MatMul only": dict(mode="dynamic", per_channel=True, fuse="bert",
                                                      op_types=["MatMul"]),
}


def _session(path: Path):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.log_severity_level = 3
    from zoo.formats import threads

    o.intra_op_num_threads = threads()
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def _latency(sess, tok, n: int, reps: int) -> float:
    names = {i.name for i in sess.get_inputs()}
    enc = tok(["the film was a quiet and moving story, warm and funny " * 20] * n, truncation=True, max_length=128,
              padding="max_length", return_tensors="np")
    feed = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
    for _ in range(2):
        sess.run(None, feed)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("configs", "sensitivity"))
    ap.add_argument("--registry", type=Path, default=ROOT / "registry.yaml")
    ap.add_argument("--model", default="minilm-sentiment")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args(argv)
    loaded = registry.load(a.registry)
    store = Store.for_registry(loaded.path)
    node = next(n for n in plan.make(loaded) if n.model_id == a.model and n.kind == "fp32")
    fp32_dir = store.artifact(node.hash)
    model = loaded.model(a.model)
    splits = load_splits(model, loaded.root, f"models.{a.model}.dataset")
    texts = splits.train.inputs[SEL]
    tok = AutoTokenizer.from_pretrained(fp32_dir)
    shape = int8._model_shape(fp32_dir)
    preset = int8.PRESETS["avx512-vnni"]
    with tempfile.TemporaryDirectory(prefix="zoo-int8-search-") as tmp:
        work = Path(tmp)
        src = _onnx.export(fp32_dir, work / "export")
        ref = _onnx.logits(_session(src), tok, texts, 128)

        def make(name: str, **kw) -> tuple[Path, dict]:
            out = work / f"{abs(hash(name))}.onnx"
            info = int8.quantize_exported(src, out, int8.Int8Params(**kw), preset, tok, splits.calibration.inputs,
                                          "search", shape=shape)
            return out, info

        def quality(path: Path) -> tuple[float, float]:
            got = _onnx.logits(_session(path), tok, texts, 128)
            return float((got.argmax(-1) == ref.argmax(-1)).mean()), float(np.abs(got - ref).mean())

        if a.what == "configs":
            paths = {"fp32 (ONNX Runtime)": src}
            for name, kw in CONFIGS.items():
                paths[name], info = make(name, **kw)
                agree, err = quality(paths[name])
                print(f"{name}: fused {info['fused']}; agreement {agree:.4f}, mean |Δlogit| {err:.4f}", flush=True)
            lat: dict[str, dict[int, list[float]]] = {k: {1: [], 8: []} for k in paths}
            sessions = {k: _session(p) for k, p in paths.items()}
            for _ in range(a.rounds):  # interleaved: every config once per round
                for k, s in sessions.items():
                    for n in (1, 8):
                        lat[k][n].append(_latency(s, tok, n, a.reps))
            base = {n: float(np.median(lat["fp32 (ONNX Runtime)"][n])) for n in (1, 8)}
            for k in paths:
                b1, b8 = (float(np.median(lat[k][n])) for n in (1, 8))
                print(f"{k}: p50 b1 {b1:.2f} ms ({base[1] / b1:.2f}× ORT fp32), b8 {b8:.2f} ms "
                      f"({base[8] / b8:.2f}×); rounds b1 {[round(x, 2) for x in lat[k][1]]}", flush=True)
        else:
            kw = CONFIGS["fused, dynamic, per-channel, MatMul+Attention"]
            full, _ = make("all", **kw)
            agree0, err0 = quality(full)
            print(f"all quantized: agreement {agree0:.4f}, mean |Δlogit| {err0:.4f}", flush=True)
            fused = work / "fused.onnx"
            int8.fuse(src, fused, "bert", *shape)
            import onnx

            graph = onnx.load(str(fused), load_external_data=False).graph
            for op in ("Attention", "MatMul"):
                of_type = [n.name for n in graph.node if n.op_type == op]
                for i, name in enumerate(of_type):
                    path, _ = make(f"{op}{i}", **kw, exclude=[{"op_type": op, "index": [i]}])
                    agree, err = quality(path)
                    print(f"{op}[{i}] ({name}) kept fp32: agreement {agree:.4f} ({agree - agree0:+.4f}), "
                          f"mean |Δlogit| {err:.4f} ({err - err0:+.4f})", flush=True)
                    path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
