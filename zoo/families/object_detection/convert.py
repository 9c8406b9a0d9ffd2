"""Convert the frozen TF SSD graph's network to ONNX once, into ``<cache>/converted/<sha256>-<params>/``.

Runs tf2onnx (and TensorFlow, to read the anchors) in a child process: both are the optional ``detection`` extra
(``pip install -e ".[detection]"``), needed only the first time on a machine; the folder is reused afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.sources import cache_dir, sha256_file

CONVERTER = 1  # bump when the conversion changes, so cached folders are converted again
MARKER = "logits_dim.npy"  # written last


def converted(pb: Path, p: Any, log=print) -> Path:
    """The folder with ``model.onnx`` (network only), ``anchors.npy`` and ``logits_dim.npy`` for graph ``pb``
    (``pb`` may also be such a folder already)."""
    if pb.is_dir() and all((pb / name).is_file() for name in ("model.onnx", "anchors.npy", MARKER)):
        return pb  # already converted (a tiny test base, or a folder someone converted elsewhere)
    if pb.is_dir():
        found = sorted(pb.rglob("*.pb"))
        if not found:
            raise ZooError(f"base: no frozen graph (*.pb) in '{pb}': point the source at the .pb file")
        pb = found[0]
    spec = f"{CONVERTER}|{p.input}|{p.boxes}|{p.logits}|{p.anchors}|{p.input_size}|{p.opset}"
    key = f"{sha256_file(pb)[:16]}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"
    dest = cache_dir() / "converted" / key
    if (dest / MARKER).is_file():
        return dest
    missing = [m for m in ("tensorflow", "tf2onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ZooError(f"base: converting the TF graph needs {' and '.join(missing)}: "
                       "install the detection extra, `pip install -e \".[detection]\"`, then build again")
    log(f"converting {pb.name} to ONNX with tf2onnx (once; cached in {dest})")
    tmp = Path(tempfile.mkdtemp(dir=_mkdir(dest.parent)))
    try:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        cmd = [sys.executable, "-m", "zoo.families.object_detection._tf_convert", str(pb), str(tmp), p.input,
               p.boxes, p.logits, p.anchors, str(p.input_size), str(p.opset)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        (_mkdir(cache_dir() / "logs") / "tf2onnx.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not (tmp / MARKER).is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ZooError(f"base: tf2onnx could not convert {pb.name} ({last}); full log in "
                           f"{cache_dir() / 'logs' / 'tf2onnx.log'}: check the tensor names in the recipe")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
