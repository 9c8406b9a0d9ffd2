"""Performance of artifacts: each timed in a fresh process, a family's variants interleaved, noisy figures marked.

The protocol (:func:`measure_family`): the variants of one family are timed round-robin — round 1 times A, B, C,
round 2 B, C, A, … — each time in a fresh child process, for ``ROUNDS`` rounds. A slow drift in machine load then
hits every variant alike, so the ratios between them survive it. Each figure is the median over rounds of the
round's p50, with its spread (max − min over rounds, relative to the median). While timing, the child counts the CPU
time that *other* processes used (``others_cores``: system busy time minus its own, per second of wall time). A
figure is **noisy** when other processes used more than ``NOISY_CORES`` cores or the spread is above
``NOISY_SPREAD``; a noisy session is measured again (``retries``) and the quietest attempt kept — still marked noisy
if it was, never published as a clean figure.

``measure()`` runs ``python -m zoo.perf ARTIFACT_DIR --task T --batch N --seq-len L --repeats R`` and reads the
JSON it prints: size on disk, parameters, latency p50/p95 at batch 1 and batch N, throughput, and peak resident
memory. What one timed call does comes from the task's family (``zoo/families``) and is recorded as "timed": token
ids padded to the declared sequence length (text classification), a forward pass over that many tokens (text
generation), or images at the artifact's input size (image classification). Each batch size gets warm-up runs
first; a slow runtime (fp16 on a CPU) stops after ``--budget-s`` seconds per batch size with at least 3 timed runs,
and says how many it did.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

EXCLUDED = {"provenance.json", "results.json"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".onnx.data", ".pt", ".gguf")
MIN_REPEATS = 3
ROUNDS = 3  # interleaved rounds per family; each variant gets a fresh process per round
NOISY_CORES = 0.25  # other processes busy on more than a quarter of a core while timing: the figure is noisy
NOISY_SPREAD = 0.10  # p50 moving more than 10% between rounds: the figure is noisy


def measure(artifact_dir: Path, batch: int, seq_len: int, repeats: int, device: str = "cpu",
            budget_s: float = 60.0, timeout_s: float = 1800.0, task: str | None = None) -> dict[str, Any]:
    """Measure ``artifact_dir`` in a child process and return its figures.

    Args:
        task: the registry task whose family loads and times the artifact; None: recognised from its files.

    Raises:
        ZooError: the child failed or timed out; the message carries the last line of its stderr.
    """
    cmd = [sys.executable, "-m", "zoo.perf", str(artifact_dir), "--batch", str(batch), "--seq-len", str(seq_len),
           "--repeats", str(repeats), "--device", device, "--budget-s", str(budget_s)]
    if task:
        cmd += ["--task", str(task)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ZooError(f"{artifact_dir}: performance run took over {timeout_s:.0f}s: lower evaluation.repeats "
                       f"or evaluation.batch_size") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ZooError(f"{artifact_dir}: performance run failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])


@dataclass(frozen=True)
class Item:
    """One artifact to time in a family session."""

    key: str  # e.g. "minilm-sentiment:int8"
    artifact_dir: Path
    task: str | None = None
    device: str = "cpu"


def measure_family(items: list[Item], batch: int, seq_len: int, repeats: int, rounds: int = ROUNDS,
                   retries: int = 1, budget_s: float = 60.0, log=None) -> dict[str, dict[str, Any]]:
    """Time ``items`` interleaved (round-robin, ``rounds`` rounds, a fresh process each time); noisy ones re-timed.

    Args:
        repeats: timed calls per batch size in all; each round does its share (at least ``MIN_REPEATS``).
        retries: how many more whole sessions to run while any figure is noisy; the quietest attempt is kept.
        budget_s: per batch size per variant in all, shared by the rounds.

    Returns:
        ``{item.key: figures}``: the child's figures with ``latency_ms[*]`` replaced by the median over rounds
        (``p50``, ``p95``, ``spread``, ``rounds_p50``, ``others_cores``), plus ``noisy`` (bool),
        ``noisy_reason``, ``protocol`` and ``attempts``.

    Raises:
        ZooError: a child failed (see :func:`measure`).
    """
    if not items:
        return {}
    per_round = max(MIN_REPEATS, -(-repeats // rounds))
    best: dict[str, dict[str, Any]] | None = None
    for attempt in range(1, retries + 2):
        runs: dict[str, list[dict]] = {it.key: [] for it in items}
        for r in range(rounds):
            shift = r % len(items)
            for it in items[shift:] + items[:shift]:
                if log:
                    log(f"{it.key}: timing, round {r + 1}/{rounds}" + (f" (attempt {attempt})" if attempt > 1 else ""))
                runs[it.key].append(measure(it.artifact_dir, batch, seq_len, per_round, device=it.device,
                                            budget_s=budget_s / rounds, task=it.task))
        got = {key: combine(rs) for key, rs in runs.items()}
        if best is None or _noise(got) < _noise(best):
            best = got
        for figures in best.values():
            figures["attempts"] = attempt
        if not any(f["noisy"] for f in best.values()):
            break
        if log and attempt <= retries:
            noisy = [k for k, f in best.items() if f["noisy"]]
            log(f"noisy timing ({', '.join(noisy)}): measuring the family again")
    assert best is not None
    return best


def _noise(figures: dict[str, dict[str, Any]]) -> tuple[int, float]:
    return (sum(bool(f["noisy"]) for f in figures.values()), max(f["others_cores"] for f in figures.values()))


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's figures from its rounds: the median of the rounds' p50 with its spread, and the noise verdict."""
    import numpy as np

    out = dict(runs[-1])
    latency = {}
    for key in runs[0]["latency_ms"]:
        p50s = [r["latency_ms"][key]["p50"] for r in runs]
        med = float(np.median(p50s))
        latency[key] = {
            "p50": round(med, 3),
            "p95": round(float(np.median([r["latency_ms"][key]["p95"] for r in runs])), 3),
            "mean": round(float(np.mean([r["latency_ms"][key]["mean"] for r in runs])), 3),
            "spread": round((max(p50s) - min(p50s)) / med, 4) if med else 0.0,
            "rounds_p50": p50s,
            "runs": sum(r["latency_ms"][key]["runs"] for r in runs),
            "batch": runs[0]["latency_ms"][key]["batch"],
            "others_cores": max(r["latency_ms"][key].get("others_cores", 0.0) for r in runs),
        }
    out["latency_ms"] = latency
    out["others_cores"] = max(v["others_cores"] for v in latency.values())
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["load_seconds"] = round(float(np.median([r["load_seconds"] for r in runs])), 3)
    out["load_average_1m"] = max((r.get("load_average_1m") or 0.0) for r in runs)
    if out.get("latency_ms", {}).get("batch_N"):
        out["throughput_per_s"] = round(latency["batch_N"]["batch"] * 1000 / latency["batch_N"]["p50"], 2)
    spread = max(v["spread"] for v in latency.values()) if len(runs) > 1 else 0.0
    reasons = []
    if out["others_cores"] > NOISY_CORES:
        reasons.append(f"other processes used {out['others_cores']:.2f} cores while timing "
                       f"(threshold {NOISY_CORES})")
    if spread > NOISY_SPREAD:
        reasons.append(f"p50 moved {spread:.0%} between rounds (threshold {NOISY_SPREAD:.0%})")
    out["noisy"] = bool(reasons)
    out["noisy_reason"] = "; ".join(reasons) or None
    out["protocol"] = {"rounds": len(runs), "interleaved": True, "fresh_process_per_round": True,
                       "noisy_cores": NOISY_CORES, "noisy_spread": NOISY_SPREAD}
    return out


def label(figures: dict[str, Any], key: str = "batch_1") -> str:
    """A latency figure as text, with its spread and the noisy mark: "9.61 ms ±3%" or "25.4 ms ±40% (noisy)"."""
    lat = (figures.get("latency_ms") or {}).get(key) or {}
    if lat.get("p50") is None:
        return "—"
    spread = f" ±{lat['spread'] / 2:.0%}" if lat.get("spread") is not None else ""
    return f"{lat['p50']:.2f} ms{spread}" + (" (noisy)" if figures.get("noisy") else "")


def disk_size(artifact_dir: Path) -> tuple[int, int]:
    """(bytes of every artifact file except provenance/results, bytes of the weights the runtime loads).

    The weights are the root's weight files (a w16a16's ``onnx/`` copy and a qlora's ``adapter/`` are extras the
    main runtime does not load), so they compare like for like across variants.
    """
    total = weights = 0
    for p in artifact_dir.rglob("*"):
        if not p.is_file() or p.name in EXCLUDED:
            continue
        size = p.stat().st_size
        total += size
        if p.parent == artifact_dir and p.name.endswith(WEIGHT_SUFFIXES):
            weights += size
    return total, weights


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(samples_ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3), "runs": len(samples_ms)}


def _time(fn, repeats: int, budget_s: float, warmup: int) -> tuple[list[float], float]:
    """(latencies in ms, cores other processes kept busy while they were taken)."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    cpu = _CpuWatch()
    start = time.perf_counter()
    while len(out) < repeats:
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
        if len(out) >= MIN_REPEATS and time.perf_counter() - start > budget_s:
            break
    return out, cpu.others_cores()


class _CpuWatch:
    """CPU time the rest of the machine used since creation: system busy time minus this process's own."""

    def __init__(self):
        import psutil

        self._proc = psutil.Process()
        self._sys0, self._own0, self._t0 = self._busy(), self._own(), time.perf_counter()

    @staticmethod
    def _busy() -> float:
        import psutil

        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def _own(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def others_cores(self) -> float:
        wall = time.perf_counter() - self._t0
        if wall <= 0:
            return 0.0
        others = (self._busy() - self._sys0) - (self._own() - self._own0)
        return round(max(0.0, others / wall), 3)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """This process's peak resident memory.

    On Linux it is VmHWM, the high-water mark of this process's own address space: ``getrusage``'s ru_maxrss would
    also count the parent's resident size at fork time (the kernel carries it across exec), so every variant would
    show at least the evaluating process's memory.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def run(artifact_dir: Path, batch: int, seq_len: int, repeats: int, device: str, budget_s: float,
        task: str | None = None) -> dict[str, Any]:
    """The measurement itself, in this process (``measure`` calls it through a child process).

    Raises:
        ZooError: the folder is not a built artifact of ``task``, or it does not load.
    """
    if not (artifact_dir / "config.json").is_file():
        raise ZooError(f"{artifact_dir}: no config.json: not a built artifact")
    import torch  # noqa: F401  (imported before the baseline so its memory is not counted as the model's)

    from zoo import formats
    from zoo.families import family_of

    task = task or formats.task_of(artifact_dir)
    family = family_of(task)
    baseline = _rss_mb()
    t0 = time.perf_counter()
    model = family.perf_model(artifact_dir, device, seq_len)
    load_s = time.perf_counter() - t0
    warmup = max(2, repeats // 10)
    latency = {}
    for key, n in (("batch_1", 1), ("batch_N", batch)):
        if n == 1 and key == "batch_N":
            latency[key] = dict(latency["batch_1"])
            continue
        samples, others = _time(model.runner(n), repeats, budget_s, warmup)
        latency[key] = {**percentiles(samples), "batch": n, "others_cores": others}
    total, weights = disk_size(artifact_dir)
    out = {
        "size_bytes": total,
        "weights_bytes": weights,
        "params": model.params,
        "latency_ms": latency,
        **model.inputs,
        "task": str(task),
        "timed": model.timed,
        "throughput_per_s": round(batch * 1000 / latency["batch_N"]["p50"], 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
        "load_seconds": round(load_s, 3),
        "runtime": model.runtime,
        "dtype": model.dtype,
        "device": device if family.gpu else "cpu",
        "threads": formats.threads(),
        # other processes competing for the cores slow every figure above: others_cores (per batch size) counts
        # them while timing; the load average is the machine's, this process included
        "others_cores": max(v["others_cores"] for v in latency.values()),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device != "cpu" and family.gpu:
        import torch

        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zoo.perf", description="Measure one artifact; print JSON.")
    ap.add_argument("artifact_dir", type=Path)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget-s", type=float, default=60.0, help="Stop timing a batch size after this long.")
    ap.add_argument("--task", default=None, help="Registry task (e.g. image-classification); default: from files.")
    a = ap.parse_args(argv)
    try:
        result = run(a.artifact_dir, a.batch, a.seq_len, a.repeats, a.device, a.budget_s, a.task)
    except ZooError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
