"""The machine at hand: a fingerprint stored with every result, and whether it matches a variant's target.

Speed is a property of a machine, not of a model file, so every performance figure carries the fingerprint of the
machine that produced it, and a target this machine does not match is reported as "not measured on target".
"""

from __future__ import annotations

import json
import os
import platform
import re
from functools import cache
from pathlib import Path
from typing import Any

from zoo.registry.schema import Device, Target

# ISA flags worth recording (as /proc/cpuinfo spells them); the rest of the flag list is noise for our purposes.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp",
             "sve", "sve2", "i8mm", "bf16")

# A target's `isa` and the cpuinfo flags a machine needs to count as that target.
TARGET_ISA = {
    "avx2": {"avx2"},
    "avx512": {"avx512f"},
    "avx512-vnni": {"avx512f", "avx512_vnni"},
    "amx": {"amx_int8", "amx_tile"},
    "arm64": set(),  # any aarch64 core; checked through the arch
    "neon": {"neon"},
}

ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


@cache
def fingerprint() -> dict[str, Any]:
    """Describe this machine: CPU model, ISA flags, cores, memory, GPU, OS, Python and library versions.

    Returns:
        A JSON-able dict; ``name`` is a one-line summary used in notes and tables.
    """
    from zoo.plan import library_versions

    arch = _arch()
    cpu = _cpu_model()
    flags = sorted(_isa_flags(arch))
    gpu = _gpu()
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    name = f"{cpu} ({usable} cores, {arch})" + (f" + {gpu['name']}" if gpu else "")
    return {
        "name": name,
        "cpu": cpu,
        "arch": arch,
        "isa": flags,
        "cores": cores,
        "cores_usable": usable,
        "memory_gb": _memory_gb(),
        "gpu": gpu,
        "board": _board(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "node_resources": _node_resources(),
    }


def matches(target: Target, fp: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Whether this machine (or the fingerprint ``fp``) is the hardware ``target`` describes.

    Returns:
        ``(True, "")`` on a match; otherwise ``(False, reason)`` with the first thing that differs.
    """
    fp = fp or fingerprint()
    if target.resources:  # the cluster's operator says which nodes are this hardware
        have = fp.get("node_resources") or {}
        missing = [k for k, v in target.resources.items() if have.get(k, 0) < v]
        if missing:
            return False, f"this node does not offer the target's Ray resources {', '.join(missing)}"
        return True, ""
    if target.device == Device.gpu:
        if not fp["gpu"]:
            return False, "the target is a GPU and this machine has none"
        return True, ""
    if target.device == Device.npu:
        return False, "the target is an NPU; measuring NPUs is not supported here"
    if target.arch != "any" and target.arch != fp["arch"]:
        return False, f"the target is {target.arch} and this machine is {fp['arch']}"
    if target.isa:
        have = set(fp["isa"])
        if fp["arch"] == "aarch64" and "asimd" in have:
            have.add("neon")  # Linux names NEON "asimd" on aarch64
        missing = TARGET_ISA[target.isa] - have
        if missing:
            return False, f"the target needs {target.isa} and this CPU lacks {', '.join(sorted(missing))}"
    if target.board and target.board.lower() not in (fp.get("board") or "").lower():
        return False, f"the target is a {target.board} and this machine is {fp.get('board') or 'not that board'}"
    return True, ""


def _node_resources() -> dict[str, float] | None:
    """The Ray node's resources when running inside a cluster task (set by zoo.cluster), else None."""
    env = os.environ.get("ZOO_NODE_RESOURCES")
    return json.loads(env) if env else None


def _arch() -> str:
    m = platform.machine().lower()
    return ARCH_ALIASES.get(m, m)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    info = _cpuinfo()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", info, re.M)
        if m:
            return m.group(1).strip()
    if platform.system() == "Darwin":
        out = _sysctl("machdep.cpu.brand_string")
        if out:
            return out
    return platform.processor() or platform.machine() or "unknown CPU"


def _isa_flags(arch: str) -> set[str]:
    info = _cpuinfo()
    m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", info, re.M)
    found = set(m.group(1).split()) if m else set()
    if platform.system() == "Darwin" and arch == "aarch64":
        found |= {"neon", "asimd"}
    return found & set(ISA_FLAGS)


def _sysctl(key: str) -> str | None:
    import subprocess

    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    m = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return round(int(m.group(1)) / 2**20, 1) if m else None


def _board() -> str | None:
    text = _read("/proc/device-tree/model").strip("\x00\n ")
    return text or None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _gpu() -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "count": torch.cuda.device_count(), "memory_gb": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
