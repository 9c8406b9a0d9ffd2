"""Our int8 variant against optimum's stock int8, with ONNX Runtime FP32 and PyTorch eager FP32 as baselines.

On the default fp32 variant (built by ``zoo build``), in one run:

1. create (once, cached under ``~/.cache/modelzoo/bench-venv/<hash of the pins>``) a virtual environment of its own
   holding optimum with the pins in ``OPTIMUM_PINS`` — optimum is not part of the zoo's install;
2. in it, export the fp32 variant with ``optimum-cli export onnx`` (the ONNX Runtime FP32 baseline) and quantize
   that with ``optimum-cli onnxruntime quantize`` and a preset optimum ships (``--preset``, default
   ``avx512_vnni``, the one the issue compares against; ``auto`` picks from this CPU's flags; optimum's CLI
   quantizes dynamically, per-tensor);
3. measure the four — PyTorch eager FP32, ONNX Runtime FP32, optimum int8, our int8 (the built variant's ONNX file)
   — the way ``zoo eval`` does: accuracy on the declared test rows with its 95% interval and the paired interval
   of the ratio to PyTorch fp32 and to optimum, weights on disk, latency at batch 1 and batch 8 (padded to the
   declared sequence length) timed interleaved (round-robin, a fresh process per round, median with spread,
   noisy figures marked: ``zoo.perf.measure_family``).

Run: ``.venv/bin/python benchmarks/int8_vs_optimum.py [--registry registry.yaml] [--model minilm-sentiment]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
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
from zoo.families.text_classification.loaders import load_classifier
from zoo.store import Store

ROOT = Path(__file__).resolve().parent.parent
# optimum's own environment: the versions it was last measured with (torch from the CPU wheel the zoo uses)
OPTIMUM_PINS = ["optimum==2.1.0", "optimum-onnx[onnxruntime]==0.1.0", "onnxruntime==1.31.1", "onnx==1.23.2",
                "torch==2.13.0", "transformers>=4.56,<4.58"]
PRESETS = ("avx512_vnni", "avx512", "avx2", "arm64")


def optimum_venv(log) -> Path:
    """The ``optimum-cli`` of a virtual environment holding ``OPTIMUM_PINS`` (created on first use, then reused).

    Raises:
        ZooError: the environment could not be created (the message keeps pip's last lines).
    """
    cache = Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "modelzoo"))
    venv = cache / "bench-venv" / hashlib.sha256(" ".join(OPTIMUM_PINS).encode()).hexdigest()[:12]
    cli = venv / "bin" / "optimum-cli"
    done = venv / ".complete"  # written last: a half-made environment is made again
    if done.is_file():
        return cli
    log(f"creating optimum's own environment in {venv} ({', '.join(OPTIMUM_PINS)}); a few minutes, once")
    shutil.rmtree(venv, ignore_errors=True)
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *OPTIMUM_PINS]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise ZooError(f"creating optimum's environment failed ({' '.join(cmd[:4])} …): {tail}")
    done.write_text(" ".join(OPTIMUM_PINS) + "\n")
    return cli


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


def _cli(cli: Path, args: list[str]) -> None:
    cmd = [str(cli), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ZooError(f"{' '.join(cmd)} failed:\n{tail}")


def make_optimum_models(cli: Path, fp32_dir: Path, work: Path, preset: str) -> tuple[Path, Path]:
    """(ONNX fp32 export, optimum int8 quantized) folders, each loadable by ``load_classifier``."""
    export = work / "ort-fp32"
    _cli(cli, ["export", "onnx", "--model", str(fp32_dir), "--task", "text-classification", str(export)])
    quant = work / "ort-int8-optimum"
    _cli(cli, ["onnxruntime", "quantize", "--onnx_model", str(export), f"--{preset}", "-o", str(quant)])
    # optimum writes model_quantized.onnx; give it the name every other ONNX artifact uses
    (quant / "model_quantized.onnx").rename(quant / "model.onnx")
    for f in export.iterdir():
        if f.is_file() and f.suffix != ".onnx" and not (quant / f.name).exists():
            shutil.copy2(f, quant / f.name)
    return export, quant


def predictions_of(path: Path, texts: list[str], seq_len: int) -> tuple[list[int], float]:
    clf = load_classifier(path)
    t0 = time.perf_counter()
    preds = clf.predict(texts, seq_len, 32).argmax(axis=1).tolist()
    seconds = time.perf_counter() - t0
    del clf
    gc.collect()
    return preds, round(seconds, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", type=Path, default=ROOT / "registry.yaml")
    ap.add_argument("--model", default="minilm-sentiment")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=30, help="Timed calls per batch size, over all rounds.")
    ap.add_argument("--rounds", type=int, default=perf.ROUNDS, help="Interleaved rounds, a fresh process each.")
    ap.add_argument("--preset", default="avx512_vnni", choices=("auto", *PRESETS),
                    help="optimum-cli's quantization preset (auto: from this CPU's flags).")
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
    # the variant named after its kind (int8, fp32) when several share a kind (distilled-int8 is int8 too)
    by_kind = {n.kind: n for n in sorted(nodes, key=lambda n: n.variant_id == n.kind)}
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
    preset = optimum_preset(fp) if a.preset == "auto" else a.preset
    console.print(f"machine: {fp['name']}; isa: {' '.join(fp['isa'])}", highlight=False)
    console.print(f"fp32: {fp32_dir}\nours int8: {int8_dir} (recipe {by_kind['int8'].recipe}); "
                  f"{formats.threads()} threads", highlight=False)

    work = a.workdir or Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        cli = optimum_venv(lambda m: console.print(m, highlight=False, markup=False))
        console.print(f"exporting and quantizing with {cli} (--{preset}) into {work}", highlight=False)
        ort_fp32, ort_int8 = make_optimum_models(cli, fp32_dir, work, preset)
        recipe = by_kind["int8"].recipe if a.int8 is None else str(int8_dir)
        contestants = {
            "PyTorch eager FP32": fp32_dir,
            "ONNX Runtime FP32": ort_fp32,
            f"optimum int8 (--{preset})": ort_int8,
            f"ours int8 ({recipe})": int8_dir,
        }
        figures: dict[str, dict] = {}
        for name, path in contestants.items():
            console.print(f"scoring {name} on {len(rows)} test rows …", highlight=False)
            preds, seconds = predictions_of(path, rows.inputs, ev.seq_len)
            figures[name] = {"preds": preds, "eval_seconds": seconds,
                             "metrics": metrics.classification(names, rows.labels, preds),
                             "interval": metrics.interval(names[0], rows.labels, preds, seed=ev.seed)}
        console.print(f"timing all four interleaved: {a.rounds} rounds, a fresh process each", highlight=False)
        items = [perf.Item(name, path, model.task.value) for name, path in contestants.items()]
        timed = perf.measure_family(items, a.batch, ev.seq_len, a.repeats, rounds=a.rounds, budget_s=a.budget_s,
                                    log=lambda m: console.print(m, highlight=False, markup=False))
        for name in contestants:
            figures[name]["perf"] = timed[name]
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    base, peer = "PyTorch eager FP32", f"optimum int8 (--{preset})"
    for name, f in figures.items():
        f["vs"] = {ref: metrics.compare(names[0], rows.labels, f["preds"], figures[ref]["preds"], seed=ev.seed)
                   for ref in (base, peer) if ref != name}
    console.print(_table(figures, names[0], base, peer, len(rows), ev.seq_len, a.batch, fp["name"]))
    noisy = [n for n, f in figures.items() if f["perf"]["noisy"]]
    if noisy:
        console.print(f"noisy (other processes competed for the cores while timing, or rounds disagreed): "
                      f"{'; '.join(f'{n}: ' + figures[n]['perf']['noisy_reason'] for n in noisy)}. Ratios between "
                      f"contestants timed in the same rounds are more robust than the absolute figures.",
                      highlight=False, markup=False)
    if a.json:
        for f in figures.values():
            f.pop("preds")
        a.json.write_text(json.dumps({"machine": fp, "preset": preset, "samples": len(rows), "seq_len": ev.seq_len,
                                      "optimum_pins": OPTIMUM_PINS, "figures": figures}, indent=2, default=str)
                          + "\n")
    return 0


def _table(figures: dict, metric: str, base: str, peer: str, samples: int, seq_len: int, batch: int,
           where: str) -> Table:
    t = Table(title=f"int8 vs optimum: {samples} test rows, seq {seq_len}, measured on {where}",
              caption="×PT / ×opt: median latency of PyTorch fp32 / optimum int8 over this row's (above 1 = faster; "
                      "all timed in the same interleaved rounds); /PT, /opt: this row's "
                      f"{metric} over the baseline's with the paired 95% bootstrap interval; ±: half the spread "
                      "of p50 over rounds")
    for col in ("runtime", f"{metric} [95%]", "/PT [95%]", "/opt [95%]", "MB", "MB/opt", "p50 b1 ms",
                f"p50 b{batch} ms", "b1 ×PT", "b1 ×opt", f"b{batch} ×PT", f"b{batch} ×opt"):
        t.add_column(col, justify="left" if col == "runtime" else "right")

    def lat(name: str, key: str) -> float:
        return figures[name]["perf"]["latency_ms"][key]["p50"]

    def acc(name: str) -> float:
        return figures[name]["metrics"][metric]

    def mb(name: str) -> float:
        return figures[name]["perf"]["weights_bytes"] / 1e6

    def vs(name: str, ref: str) -> str:
        if name == ref:
            return "1"
        r = figures[name]["vs"][ref]["ratio"]
        return f"{r['value']:.4f} [{r['low']:.3f}, {r['high']:.3f}]"

    for name in figures:
        iv = figures[name]["interval"]
        t.add_row(
            name, f"{acc(name):.4f} [{iv['low']:.3f}, {iv['high']:.3f}]", vs(name, base), vs(name, peer),
            f"{mb(name):.1f}", f"{mb(name) / mb(peer):.2f}", perf.label(figures[name]["perf"], "batch_1"),
            perf.label(figures[name]["perf"], "batch_N"),
            *(f"{lat(ref, key) / lat(name, key):.2f}×" for key in ("batch_1", "batch_N") for ref in (base, peer)),
        )
    return t


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ZooError as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
