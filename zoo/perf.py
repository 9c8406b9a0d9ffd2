"""Performance of one artifact, measured in a fresh process so no other variant's memory or caches count.

``measure()`` runs ``python -m zoo.perf ARTIFACT_DIR --task T --batch N --seq-len L --repeats R`` and reads the
JSON it prints: size on disk, parameters, latency p50/p95 at batch 1 and batch N, throughput, and peak resident
memory. What one timed call does comes from the task's handler (``zoo.tasks``) and is recorded as "timed": token
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
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

EXCLUDED = {"provenance.json", "results.json"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".pt", ".gguf")
MIN_REPEATS = 3


def measure(artifact_dir: Path, batch: int, seq_len: int, repeats: int, device: str = "cpu",
            budget_s: float = 60.0, timeout_s: float = 1800.0, task: str | None = None) -> dict[str, Any]:
    """Measure ``artifact_dir`` in a child process and return its figures.

    Args:
        task: the registry task whose handler loads and times the artifact; None: recognised from its files.

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


def _time(fn, repeats: int, budget_s: float, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < repeats:
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
        if len(out) >= MIN_REPEATS and time.perf_counter() - start > budget_s:
            break
    return out


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

    from zoo import formats, tasks

    task = task or formats.task_of(artifact_dir)
    handler = tasks.handler(task)
    baseline = _rss_mb()
    t0 = time.perf_counter()
    model = handler.perf_model(artifact_dir, device, seq_len)
    load_s = time.perf_counter() - t0
    warmup = max(2, repeats // 10)
    latency = {}
    for key, n in (("batch_1", 1), ("batch_N", batch)):
        if n == 1 and key == "batch_N":
            latency[key] = dict(latency["batch_1"])
            continue
        samples = _time(model.runner(n), repeats, budget_s, warmup)
        latency[key] = {**percentiles(samples), "batch": n}
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
        "device": device if handler.gpu else "cpu",
        "threads": formats.threads(),
        # other processes competing for the cores slow every figure above; a load near the core count or above it
        # means the machine was shared while measuring
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device != "cpu" and handler.gpu:
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
