"""Our int8 variant against optimum's stock int8, with ONNX Runtime FP32 and PyTorch eager FP32 as baselines.

On the default fp32 variant (built by ``zoo build``), in one run:

1. export it to ONNX with ``optimum-cli export onnx`` (the ONNX Runtime FP32 baseline);
2. quantize that with ``optimum-cli onnxruntime quantize`` and the preset optimum ships for this CPU
   (``--avx512_vnni``, ``--avx512``, ``--avx2`` or ``--arm64``, chosen from the machine fingerprint; its default is
   dynamic quantization, per-tensor);
3. measure all four — PyTorch eager FP32, ONNX Runtime FP32, optimum int8, our int8 — the same way ``zoo eval``
   does: accuracy on the declared test rows, weights on disk, latency p50/p95 at batch 1 and batch 8 (padded to
   the declared sequence length), each timed in a fresh process.

Run: ``.venv/bin/python benchmarks/int8_vs_optimum.py [--registry registry.yaml] [--model minilm-sentiment]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from zoo import evaluate, formats, machine, metrics, perf, plan, registry
from zoo.errors import ZooError
from zoo.store import Store

ROOT = Path(__file__).resolve().parent.parent


def optimum_preset(fp: dict) -> str:
    """The optimum-cli quantization preset for this CPU."""
    isa = set(fp["isa"])
    if fp["arch"] == "aarch64":
        return "arm64"
    if "avx512_vnni" in isa:
        return "avx512_vnni"
    if "avx512f" in isa:
        return "avx512"
    return "avx2"


def _cli(args: list[str]) -> None:
    exe = Path(sys.executable).with_name("optimum-cli")
    cmd = [str(exe) if exe.exists() else "optimum-cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ZooError(f"{' '.join(cmd)} failed:\n{tail}")


def make_optimum_models(fp32_dir: Path, work: Path, preset: str) -> tuple[Path, Path]:
    """(ONNX fp32 export, optimum int8 quantized) folders, each loadable by ``formats.load_classifier``."""
    export = work / "ort-fp32"
    _cli(["export", "onnx", "--model", str(fp32_dir), "--task", "text-classification", str(export)])
    quant = work / "ort-int8-optimum"
    _cli(["onnxruntime", "quantize", "--onnx_model", str(export), f"--{preset}", "-o", str(quant)])
    # optimum writes model_quantized.onnx; give it the name every other ONNX artifact uses
    (quant / "model_quantized.onnx").rename(quant / "model.onnx")
    for f in export.iterdir():
        if f.is_file() and f.suffix != ".onnx" and not (quant / f.name).exists():
            shutil.copy2(f, quant / f.name)
    return export, quant


def accuracy_of(path: Path, texts: list[str], labels: list[int], seq_len: int, names: list[str]) -> dict:
    clf = formats.load_classifier(path)
    t0 = time.perf_counter()
    preds = clf.predict(texts, seq_len, 32).argmax(axis=1)
    seconds = time.perf_counter() - t0
    del clf
    gc.collect()
    return {**metrics.classification(names, labels, preds.tolist()), "eval_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", type=Path, default=ROOT / "registry.yaml")
    ap.add_argument("--model", default="minilm-sentiment")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=60.0, help="Per batch size, per contestant.")
    ap.add_argument("--workdir", type=Path, help="Keep the exported/quantized models here (default: a temp dir).")
    ap.add_argument("--json", type=Path, help="Also write the figures to this file.")
    ap.add_argument("--fp32", type=Path, help="An fp32 artifact folder (default: the registry's built fp32).")
    ap.add_argument("--int8", type=Path, help="An int8 artifact folder (default: the registry's built int8).")
    a = ap.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)

    loaded = registry.load(a.registry)
    store = Store.for_registry(loaded.path)
    model = loaded.model(a.model)
    nodes = [n for n in plan.make(loaded) if n.model_id == a.model]
    by_kind = {n.kind: n for n in nodes}
    dirs = {}
    for kind, given in (("fp32", a.fp32), ("int8", a.int8)):
        if given is not None:
            dirs[kind] = given
        elif kind in by_kind and store.is_built(by_kind[kind].hash):
            dirs[kind] = store.artifact(by_kind[kind].hash)
        else:
            raise ZooError(f"{a.model}: no built {kind} variant: run `zoo build {a.model}` first (or pass --{kind})")
    fp32_dir, int8_dir = dirs["fp32"], dirs["int8"]
    ev = model.evaluation
    rows = evaluate.eval_rows(model, loaded, a.model)
    names = [m.value for m in ev.metrics]
    fp = machine.fingerprint()
    preset = optimum_preset(fp)
    console.print(f"machine: {fp['name']}; isa: {' '.join(fp['isa'])}", highlight=False)
    console.print(f"fp32: {fp32_dir}\nours int8: {int8_dir} (recipe {by_kind['int8'].recipe}); "
                  f"{formats.threads()} threads", highlight=False)

    work = a.workdir or Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        console.print(f"exporting and quantizing with optimum-cli (--{preset}) into {work}", highlight=False)
        ort_fp32, ort_int8 = make_optimum_models(fp32_dir, work, preset)
        contestants = {
            "PyTorch eager FP32": fp32_dir,
            "ONNX Runtime FP32": ort_fp32,
            f"optimum int8 (--{preset})": ort_int8,
            f"ours int8 ({formats.read_provenance(int8_dir).get('recipe', {}).get('mode', 'zoo')})": int8_dir,
        }
        figures = {}
        for name, path in contestants.items():
            console.print(f"measuring {name} …", highlight=False)
            acc = accuracy_of(path, rows.inputs, rows.labels, ev.seq_len, names)
            p = perf.measure(path, a.batch, ev.seq_len, a.repeats, budget_s=a.budget_s)
            figures[name] = {"metrics": acc, "perf": p}
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    base, peer = "PyTorch eager FP32", f"optimum int8 (--{preset})"
    console.print(_table(figures, names[0], base, peer, len(rows), ev.seq_len, a.batch, fp["name"]))
    if a.json:
        a.json.write_text(json.dumps({"machine": fp, "preset": preset, "samples": len(rows), "seq_len": ev.seq_len,
                                      "figures": figures}, indent=2, default=str) + "\n")
    return 0


def _table(figures: dict, metric: str, base: str, peer: str, samples: int, seq_len: int, batch: int,
           where: str) -> Table:
    t = Table(title=f"int8 vs optimum: {samples} test rows, seq {seq_len}, measured on {where}",
              caption="×PT / ×opt: latency of PyTorch fp32 / optimum int8 over this row's (above 1 = faster); "
                      f"{metric} / size ratios are this row over the named baseline")
    for col in ("runtime", metric, "/PT", "/opt", "MB", "MB/opt", "p50 b1 ms", f"p50 b{batch} ms", "b1 ×PT",
                "b1 ×opt", f"b{batch} ×PT", f"b{batch} ×opt"):
        t.add_column(col, justify="left" if col == "runtime" else "right")

    def lat(name: str, key: str) -> float:
        return figures[name]["perf"]["latency_ms"][key]["p50"]

    def acc(name: str) -> float:
        return figures[name]["metrics"][metric]

    def mb(name: str) -> float:
        return figures[name]["perf"]["weights_bytes"] / 1e6

    for name in figures:
        t.add_row(
            name, f"{acc(name):.4f}", f"{metrics.ratio(metric, acc(name), acc(base)):.4f}",
            f"{metrics.ratio(metric, acc(name), acc(peer)):.4f}", f"{mb(name):.1f}", f"{mb(name) / mb(peer):.2f}",
            f"{lat(name, 'batch_1'):.2f}", f"{lat(name, 'batch_N'):.2f}",
            *(f"{lat(ref, key) / lat(name, key):.2f}×" for key in ("batch_1", "batch_N") for ref in (base, peer)),
        )
    return t


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ZooError as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
