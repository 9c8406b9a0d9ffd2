"""ONNX for CNNs: export a torch module, quantize it statically (QDQ) with ONNX Runtime, convert it to fp16, run it.

The graph takes ``pixel_values`` (float NCHW, preprocessed as in the artifact's config.json) with a dynamic batch
axis and returns ``logits``. The legacy TorchScript exporter is used: it needs no onnxscript and folds an eval-mode
BatchNorm into its conv itself, which is why an unfolded baseline exports BN as explicit Mul/Add
(``zoo.families.image_classification.bn_fold.unfold_bn``).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zoo.errors import ZooError

OPSET = 17


def export_onnx(model: Any, image_size: int, path: Path, opset: int = OPSET) -> Path:
    """Export ``model`` (eval mode) to ``path`` for [batch, 3, image_size, image_size] float inputs.

    Raises:
        ZooError: the exporter failed (its first line is kept).
    """
    import torch

    from zoo.families.image_classification.model import INPUT_NAME

    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, image_size, image_size)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=["logits"],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}})
    except Exception as e:  # the exporter raises many types; keep the first line
        raise ZooError(f"ONNX export failed: {str(e).splitlines()[0] if str(e) else e!r}") from e
    return path


def simplify(src: Path, dest: Path, keep_mul_add: bool = False) -> Path:
    """ONNX Runtime's basic graph optimizations, saved: constants folded and each Pad merged into its Conv.

    This is the pre-processing ONNX Runtime asks for before quantization: the exporter's pad arithmetic
    (Shape/Slice/Concat …) becomes constants, so the quantizer sees only the layers. ``keep_mul_add`` disables the
    Conv+Mul/Add fusions so that an unfolded batch norm stays unfolded.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dest)
    opts.log_severity_level = 3
    disabled = ["ConvMulFusion", "ConvAddFusion", "ConvBNFusion"] if keep_mul_add else []
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    return dest


def fold_weight_quantizers(path: Path) -> int:
    """Store constant weights as int8: each QuantizeLinear of an initializer is computed once and removed.

    A QAT export holds fp32 weights → QuantizeLinear → DequantizeLinear; afterwards the DequantizeLinear reads an
    int8 initializer directly, as in ONNX Runtime's own QDQ output (4x smaller file, same function).
    Returns the number of weights converted.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    users: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    removed, count = [], 0
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits:
            continue
        w, scale = value(node.input[0]), value(node.input[1])
        zero = value(node.input[2]) if len(node.input) > 2 else np.zeros((), np.uint8)
        if w is None or scale is None or zero is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.ndim == 1:
            shape[axis] = -1
        info = np.iinfo(zero.dtype)
        q = np.clip(np.rint(w / scale.reshape(shape)) + zero.astype(np.int64).reshape(shape), info.min, info.max)
        tensor = numpy_helper.from_array(q.astype(zero.dtype), name=node.output[0])
        graph.initializer.append(tensor)
        removed.append(node)
        if users.get(node.input[0], 0) == 1:
            graph.initializer.remove(inits.pop(node.input[0]))
        count += 1
    for node in removed:
        graph.node.remove(node)
    onnx.save(model, str(path))
    return count


def session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits (float32) of an image-classifier session for preprocessed inputs ``x`` [N,3,H,W]."""
    name = sess.get_inputs()[0].name
    out = [sess.run(None, {name: x[i : i + batch_size].astype(np.float32)})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)


class _Reader:
    """Feeds calibration batches to ONNX Runtime's calibrator."""

    def __init__(self, x: np.ndarray, batch_size: int, input_name: str):
        self.x, self.batch_size, self.name, self.pos = x, batch_size, input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= len(self.x):
            return None
        batch = self.x[self.pos : self.pos + self.batch_size].astype(np.float32)
        self.pos += self.batch_size
        return {self.name: batch}

    def rewind(self) -> None:
        self.pos = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (b := self.get_next()) is not None:
            yield b


QType = Literal["int8", "uint8", "int16", "uint16"]


def quantize_qdq(src: Path, dest: Path, calibration: np.ndarray, *, per_channel: bool, activations: QType,
                 weights: QType, method: Literal["minmax", "entropy", "percentile"], percentile: float,
                 reduce_range: bool, weight_symmetric: bool, activation_symmetric: bool,
                 exclude: list[str] | None = None, batch_size: int = 16) -> None:
    """Static QDQ quantization of the fp32 graph ``src`` into ``dest``, calibrated on preprocessed ``calibration``.

    16-bit activations (w8a16) use ONNX Runtime's contrib Q/DQ ops, which opset 17 needs for int16.

    Args:
        exclude: torch module names (``features.0.conv``) whose ONNX nodes stay in float.

    Raises:
        ZooError: ONNX Runtime refused the graph or the options (its first line is kept), or an ``exclude`` name
            matches no node.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    qt = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8, "int16": QuantType.QInt16, "uint16": QuantType.QUInt16}
    options: dict[str, Any] = {"WeightSymmetric": weight_symmetric, "ActivationSymmetric": activation_symmetric}
    if method == "percentile":
        options["CalibPercentile"] = percentile
    if activations in ("int16", "uint16") or weights in ("int16", "uint16"):
        options["UseQDQContribOps"] = True
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    name = graph.input[0].name
    excluded = nodes_of_modules(graph, exclude or [])
    try:
        quantize_static(str(src), str(dest), _Reader(calibration, batch_size, name), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, reduce_range=reduce_range, activation_type=qt[activations],
                        weight_type=qt[weights], calibrate_method=calib, nodes_to_exclude=excluded or None,
                        extra_options=options)
    except Exception as e:  # onnxruntime raises many types; keep the first line
        raise ZooError(f"static quantization of '{src.name}' failed: "
                       f"{str(e).splitlines()[0] if str(e) else e!r}") from e


def nodes_of_modules(graph: Any, modules: list[str]) -> list[str]:
    """ONNX node names the TorchScript exporter gave to each torch module (``features.1.layers.0.conv`` →
    ``/features/features.1/layers/layers.0/conv/...``).

    Raises:
        ZooError: a module name matches no node (the message lists a few names that exist).
    """
    found: list[str] = []
    for module in modules:
        levels, prev = [], ""
        for part in module.split("."):
            levels.append(f"{prev}.{part}" if part.isdigit() else part)
            prev = part if not part.isdigit() else f"{prev}.{part}"
        prefix = "/" + "/".join(levels) + "/"
        hits = [n.name for n in graph.node if n.name.startswith(prefix)]
        if not hits:
            raise ZooError(f"exclude: '{module}' names no layer of the exported graph: use torch module names such "
                           "as features.0.conv or classifier")
        found += hits
    return found


def to_fp16(src: Path, dest: Path) -> None:
    """An fp16 copy of the graph that still takes and returns float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dest))


def initializer_elements(path: Path) -> int:
    """Number of weight elements stored in the graph (quantized or not)."""
    import math

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(math.prod(t.dims) for t in graph.initializer
               if len(t.dims) >= 1 and t.data_type != onnx.TensorProto.INT64)


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each op type the graph has (provenance: shows QDQ pairs, Mul/Add of unfolded BN …)."""
    import onnx

    counts: dict[str, int] = {}
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))
