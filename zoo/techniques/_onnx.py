"""Shared ONNX steps of the half and int8 techniques: export with torch.onnx, run with ONNX Runtime, compare."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

OPSET = 17
EXPORTERS = ("torchscript", "dynamo")


def export(parent_dir: Path, out_dir: Path, exporter: str = "torchscript") -> Path:
    """Export the transformers classifier in ``parent_dir`` to ``out_dir/model.onnx`` (plus config and tokenizer).

    ``torch.onnx`` writes the plain, unfused graph (ONNX Runtime's quantizer fails shape inference on fused graphs)
    with dynamic batch and sequence axes; "torchscript" names nodes after their modules
    (``/bert/encoder/layer.0/attention/self/MatMul``), "dynamo" names them generically and records the module path
    in the node's metadata (:func:`node_paths` gives both the same selectable path).

    Raises:
        ZooError: the export failed (the message keeps the exporter's first line).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            parent_dir, dtype=torch.float32, attn_implementation="eager").eval()  # ORT fuses eager attention
        tokenizer = AutoTokenizer.from_pretrained(parent_dir)
        enc = tokenizer(["an example sentence to trace", "a second one"], padding=True, return_tensors="pt")
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
        args = tuple(enc[n] for n in names)
        axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
        with _quiet(), torch.no_grad():
            if exporter == "dynamo":
                batch, seq = torch.export.Dim("batch_size"), torch.export.Dim("sequence_length")
                torch.onnx.export(model, args, str(path), dynamo=True, opset_version=18, input_names=names,
                                  output_names=["logits"], dynamic_shapes={n: {0: batch, 1: seq} for n in names},
                                  external_data=False)
            else:
                torch.onnx.export(model, args, str(path), dynamo=False, opset_version=OPSET, input_names=names,
                                  output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch_size"}})
    except Exception as e:  # the exporter raises many types; keep its first line
        raise ZooError(f"ONNX export of '{parent_dir}' failed: {str(e).splitlines()[0] if str(e) else e!r}") from e
    model.config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return path


def node_paths(graph: Any) -> list[tuple[str, str]]:
    """(name, module path) of every node, so one glob selects the same nodes whichever exporter wrote the graph.

    The module path is ``/<module>/<submodule>/.../<OpType>`` (``/bert/encoder/layer.0/output/dense/MatMul``): the
    torchscript exporter names nodes that way already; the dynamo exporter names them generically (``node_MatMul_82``)
    and records the qualified module names in ``pkg.torch.onnx.name_scopes`` (``['', 'bert', 'bert.encoder', ...,
    'linear']``: every enclosing module, then the torch op), from which the path is rebuilt.
    """
    import ast

    out = []
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        path = node.name
        if scopes := meta.get("pkg.torch.onnx.name_scopes"):
            try:
                modules = [s for s in ast.literal_eval(scopes)[:-1] if s]  # the last scope is the torch op
            except (ValueError, SyntaxError):
                modules = []
            parts = [q[len(prev) + 1:] if prev and q.startswith(prev + ".") else q
                     for prev, q in zip(["", *modules], modules, strict=False)]
            path = "/" + "/".join([*parts, node.op_type])
        out.append((node.name, path))
    return out


def clear_value_info(model_path: Path) -> None:
    """Drop the exporter's intermediate shape annotations: ONNX Runtime's quantizer re-infers them, and the dynamo
    exporter's symbolic ones make its shape inference fail."""
    import onnx

    model = onnx.load(str(model_path))
    if len(model.graph.value_info):
        del model.graph.value_info[:]
        onnx.save(model, str(model_path))


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

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
