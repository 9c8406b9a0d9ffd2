"""qlora-4bit against fp32 and int8, side by side in one run, for the text classifier and the causal LM: weight bytes
on disk, peak RSS with the model loaded, the quality ratio ``zoo eval`` recorded (with its 95% interval and test-set
size) and rows/s (classifier) or greedy tokens/s (LM).

    python benchmarks/qlora.py [--registry registry.yaml] [--models minilm-sentiment smollm2-hamlet]

The variants must be built and evaluated first (`zoo build MODEL:VARIANT`, `zoo eval MODEL:VARIANT`). Each variant is
loaded in a fresh process, so its memory is its own, counted above the process's resident memory before loading (the
libraries already imported): "resident MB" after loading and one warm-up batch (safetensors are mapped lazily, so
weights count once touched), "peak MB" the high-water mark after the timed runs (activations, kernel workspaces and
load-time copies included).
Weight bytes are the files the variant's loader reads: the root's weights, plus ``adapter/`` where the root is the NF4
base the adapter is applied to (``root: nf4-base``). Speed uses ``ZOO_THREADS`` threads (else every core).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("fp32", "int8", "qlora-4bit")
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx.data", ".bin", ".data")


def weight_bytes(art: Path, prov: dict) -> tuple[int, int]:
    """(root weight bytes, adapter weight bytes counted because the root needs it: an nf4-base root's adapter/)."""
    root = sum(f.stat().st_size for f in art.iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    adapter = art / prov.get("adapter", "adapter")
    extra = 0
    if prov.get("root") == "nf4-base" and adapter.is_dir():
        extra = sum(f.stat().st_size for f in adapter.iterdir() if f.name.endswith(WEIGHT_SUFFIXES))
    return root, extra


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(task: str, art: Path, texts: list[str], max_length: int, repeats: int, new_tokens: int) -> dict:
    """Load one variant in this (fresh) process, run it, and report memory and speed."""
    # every library any variant's loader imports, before the baseline: libraries are not the model's memory
    import accelerate  # noqa: F401
    import bitsandbytes  # noqa: F401
    import onnxruntime  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: F401

    from zoo import formats
    from zoo.families.text_classification import loaders

    formats.set_threads()
    if task == "text-generation":
        import onnxruntime_genai  # noqa: F401

        from zoo.families.text_generation import load_generator
    gc.collect()
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    if task == "text-generation":
        model = load_generator(art, threads=formats.threads())
        load_s = time.perf_counter() - start
        model.continue_text(texts[0], 4)  # warm-up: every weight is touched (safetensors are mapped lazily)
        gc.collect()
        resident = _status_kb("VmRSS")
        from lm_tokens import tokens_per_s

        rate, _ = tokens_per_s(model, texts, new_tokens, repeats)
        unit = "tokens/s"
    else:
        model = loaders.load_classifier(art)
        load_s = time.perf_counter() - start
        model.predict(texts[:8], max_length, batch_size=8)  # warm-up: every weight is touched (mapped lazily)
        gc.collect()
        resident = _status_kb("VmRSS")
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.predict(texts, max_length, batch_size=8)
            rates.append(len(texts) / (time.perf_counter() - t0))
        rate, unit = statistics.median(rates), "rows/s"
    return {"resident_mb": (resident - before) / 1024, "loaded_mb": (_status_kb("VmHWM") - before) / 1024,
            "load_s": load_s, "rate": rate, "unit": unit, "runtime": getattr(model, "runtime", "?"),
            "dtype": getattr(model, "dtype", "?")}


def quality(results: dict, metric: str) -> str:
    value = (results.get("metrics") or {}).get(metric)
    iv = (results.get("intervals") or {}).get(metric) or {}
    text = f"{value:.4f}" if isinstance(value, int | float) else "-"
    if iv.get("low") is not None:
        text += f" [{iv['low']:.4f}, {iv['high']:.4f}]"
    return text


def ratio(results: dict, ref: dict, metric: str) -> str:
    """The ratio to fp32 (fp32 / value for a lower-is-better metric) and the recorded gate: its paired interval and
    verdict where it compared with fp32, else why not."""
    from zoo import metrics

    value, reference = ((r.get("metrics") or {}).get(metric) for r in (results, ref))
    if results is ref or value is None or reference is None:
        return "-"
    text = f"{metrics.ratio(metric, value, reference):.4f}"
    gate = results.get("gate") or {}
    iv = gate.get("interval") or {}
    if gate.get("of") == "fp32" and iv.get("low") is not None:
        text += f" [{iv['low']:.4f}, {iv['high']:.4f}]"
    verdict = gate.get("verdict") or ("pass" if gate.get("passed") else "fail")
    return text + (f"; gate vs {gate['of']}: {verdict}" if gate.get("ratio") is not None
                   else f"; gate: {gate.get('reason') or verdict}")


def family(loaded, store, model_id: str, args) -> list[str]:
    from zoo import plan
    from zoo.status import read_results

    model = loaded.model(model_id)
    nodes = {n.variant_id: n for n in plan.make(loaded) if n.model_id == model_id}
    missing = [v for v in VARIANTS if v not in nodes or not store.is_built(nodes[v].hash)]
    if missing:
        return [f"{model_id}: {', '.join(missing)} not built: run `zoo build {model_id}:{missing[0]}` and "
                f"`zoo eval {model_id}:{missing[0]}` first"]
    task = model.task.value
    metric = ((model.evaluation.gate.metric if model.evaluation.gate else None) or model.evaluation.metrics[0]).value
    if task == "text-generation":
        from zoo.families.text_generation import data

        texts = [t[:200] for t in data.load_splits(model.dataset, loaded.root, "dataset").test[:args.prompts]]
        max_length = model.evaluation.seq_len or 128
    else:
        from zoo.data import load_splits

        texts = list(load_splits(model, loaded.root).test.inputs[:args.rows])
        max_length = model.evaluation.seq_len or 128
    rows = []
    for v in VARIANTS:
        art = store.artifact(nodes[v].hash)
        prov = json.loads((art / "provenance.json").read_text())
        root, extra = weight_bytes(art, prov)
        cmd = [sys.executable, __file__, "--child", task, str(art), "--max-length", str(max_length),
               "--repeats", str(args.repeats), "--new-tokens", str(args.new_tokens)]
        out = subprocess.run(cmd, input=json.dumps(texts), capture_output=True, text=True, check=False)
        if out.returncode:
            tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            return [f"{model_id}:{v}: measuring failed: {tail}"]
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        results = read_results(store, nodes[v]) or {}
        rows.append((v, prov, root, extra, figures, results))
    ref_bytes = rows[0][2] + rows[0][3]
    ref_res, ref_mem, ref_rate = rows[0][4]["resident_mb"], rows[0][4]["loaded_mb"], rows[0][4]["rate"]
    samples = rows[0][5].get("samples")
    unit = rows[0][4]["unit"]
    timed = (f"{len(texts)} prompts × up to {args.new_tokens} new tokens (greedy)" if task == "text-generation"
             else f"{len(texts)} test rows in batches of 8")
    lines = [f"{model_id} ({task}): {metric} on {samples} held-out "
             f"{'passages' if task == 'text-generation' else 'rows'}, 95% intervals; speed on {timed}, "
             f"median of {args.repeats}",
             f"{'variant':11} {'runtime':12} {'dtype':5} {'weights MB':>10} {'(adapter)':>9} {'/fp32':>6} "
             f"{'resident MB':>11} {'/fp32':>6} {'peak MB':>8} {'/fp32':>6} {unit:>9} {'×fp32':>6}  "
             f"{metric} | ratio to fp32 [95%]"]
    for v, _prov, root, extra, fig, results in rows:
        total = root + extra
        lines.append(f"{v:11} {fig['runtime']:12} {str(fig['dtype']):5} {total / 1e6:10.1f} {extra / 1e6:9.1f} "
                     f"{total / ref_bytes:6.3f} {fig['resident_mb']:11.1f} {fig['resident_mb'] / ref_res:6.3f} "
                     f"{fig['loaded_mb']:8.1f} {fig['loaded_mb'] / ref_mem:6.3f} "
                     f"{fig['rate']:9.1f} {fig['rate'] / ref_rate:6.2f}  {quality(results, metric)} | "
                     f"{ratio(results, rows[0][5], metric)}")
    q = rows[-1][1]
    if q.get("unquantized"):
        lines.append(f"qlora-4bit: {q['unquantized']} (root: {q.get('root', 'merged')})")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", type=Path, default=Path("registry.yaml"))
    ap.add_argument("--models", nargs="+", default=["minilm-sentiment", "smollm2-hamlet"])
    ap.add_argument("--rows", type=int, default=64, help="classifier test rows timed per repeat")
    ap.add_argument("--prompts", type=int, default=3, help="LM prompts decoded per repeat")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("TASK", "ARTIFACT"), help=argparse.SUPPRESS)
    ap.add_argument("--max-length", type=int, default=128, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        texts = json.loads(sys.stdin.read())
        print(json.dumps(child(args.child[0], Path(args.child[1]), texts, args.max_length, args.repeats,
                               args.new_tokens)))
        return 0
    from zoo import registry
    from zoo.errors import ZooError
    from zoo.store import Store

    try:
        loaded = registry.load(args.registry)
    except ZooError as e:
        print(e, file=sys.stderr)
        return 1
    store = Store.for_registry(loaded.path)
    failed = False
    for model_id in args.models:
        if model_id not in loaded.registry.models:
            print(f"{args.registry}: no model '{model_id}' (models: {', '.join(loaded.registry.models)})",
                  file=sys.stderr)
            return 1
        lines = family(loaded, store, model_id, args)
        failed |= len(lines) == 1
        print("\n".join(lines) + "\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
