"""Shared ONNX steps of the half and int8 techniques: export with optimum-onnx, run with ONNX Runtime, compare."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def export(parent_dir: Path, out_dir: Path) -> Path:
    """Export the transformers classifier in ``parent_dir`` to ``out_dir/model.onnx`` (plus config and tokenizer).

    The plain, unfused graph is kept on purpose: ONNX Runtime's quantizer fails shape inference on fused graphs.

    Raises:
        ZooError: the export failed (the message keeps the exporter's first line).
    """
    from optimum.exporters.onnx import main_export

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet():
            main_export(str(parent_dir), out_dir, task="text-classification", library_name="transformers",
                        do_validation=False)  # compared below against torch, after any conversion
    except Exception as e:  # the exporter raises many types; keep its first line
        raise ZooError(f"ONNX export of '{parent_dir}' failed: {str(e).splitlines()[0] if str(e) else e!r}") from e
    return out_dir / "model.onnx"


def session(model_path: Path) -> Any:
    """An ONNX Runtime CPU session for ``model_path``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def logits(sess: Any, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 32) -> Any:
    """Logits (float32 numpy) of an ONNX sequence classifier for ``texts``, feeding only the inputs it declares."""
    import numpy as np

    names = {i.name for i in sess.get_inputs()}
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start : start + batch_size]), truncation=True, max_length=max_length,
                        padding=True, return_tensors="np")
        feed = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
        out.append(sess.run(None, feed)[0].astype(np.float32))
    return np.concatenate(out)


def torch_logits(model_dir: Path, tokenizer: Any, texts: Sequence[str], max_length: int) -> Any:
    """Logits (float32 numpy) of the fp32 transformers classifier in ``model_dir``."""
    from transformers import AutoModelForSequenceClassification

    from zoo.techniques._train import predict_logits

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    return predict_logits(model, tokenizer, texts, max_length).numpy()


def agreement(reference: Any, candidate: Any) -> dict[str, float]:
    """How closely ``candidate`` logits follow ``reference``: top-1 agreement and the largest absolute difference."""
    import numpy as np

    return {"top1_agreement": round(float((reference.argmax(-1) == candidate.argmax(-1)).mean()), 4),
            "max_abs_diff": round(float(np.abs(reference - candidate).max()), 5)}


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's tracer warnings and prints; errors still raise."""
    import warnings

    level = logging.getLogger("optimum").level
    logging.getLogger("optimum").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger("optimum").setLevel(level)
