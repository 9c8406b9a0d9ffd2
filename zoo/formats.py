"""What every artifact format shares: provenance, the format and task of a folder, thread settings, ONNX sizes.

Each format's loader lives in the family that owns it (``Family.formats``); :func:`task_of` says which family an
artifact folder belongs to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError, one_line

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
FALLBACK_TASK = "text-classification"  # what a folder without provenance or a recognised config is taken for
MAX_THREADS = 1024  # above it torch and ONNX Runtime refuse or overflow; no machine here has more cores


def threads() -> int:
    """Threads for one inference process: ``ZOO_THREADS`` if set, else every core this process may use."""
    env = os.environ.get("ZOO_THREADS", "").strip()
    if env and not (env.isascii() and env.isdigit() and 1 <= int(env) <= MAX_THREADS):
        raise ZooError(f"ZOO_THREADS='{one_line(env)[:40]}': set it to a whole number of threads from 1 to "
                       f"{MAX_THREADS}, e.g. ZOO_THREADS=2, or unset it to use every core")
    n = int(env) if env else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


def read_provenance(artifact_dir: Path) -> dict[str, Any]:
    from zoo.verify import read_json

    path = artifact_dir / "provenance.json"
    return read_json(path, "rebuild it with `zoo build MODEL:VARIANT --force`") if path.is_file() else {}


def detect_format(artifact_dir: Path) -> str:
    """The artifact's format: provenance's "format", else "onnx" if it holds model.onnx, else "transformers"."""
    fmt = read_provenance(artifact_dir).get("format")
    if fmt:
        return fmt
    return "onnx" if (artifact_dir / "model.onnx").is_file() else "transformers"


def task_of(artifact_dir: Path) -> str:
    """The task an artifact folder serves: the family owning its provenance's format, else the family that
    recognises its config.json (a pulled repo has no provenance); a folder none claims is taken for a text
    classifier, whose loader reports a folder that is not one."""
    from zoo.families import FAMILIES

    config_path = artifact_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    for fmt in (read_provenance(artifact_dir).get("format"), config.get("format")):
        if fmt and (owner := FAMILIES.owner_of(str(fmt))) is not None:
            return owner.task
    found = next((f.task for f in FAMILIES if f.recognises(config)), None)
    return found or FALLBACK_TASK


def onnx_params(path: Path) -> int:
    """Elements of every non-scalar initializer of an ONNX graph (its weights), without loading external data."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(int(np.prod(t.dims)) for t in graph.initializer if len(t.dims) > 0)


def set_threads() -> None:
    """Give torch :func:`threads` intra-op threads (ONNX Runtime sessions take theirs in their options)."""
    import torch

    n = threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


