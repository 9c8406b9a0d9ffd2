"""int8: ONNX export with torch.onnx, then the post-export steps of :func:`quantize_exported` — ONNX Runtime's
transformer graph fusions (optional), then ONNX Runtime quantization (static QDQ with calibration, or dynamic).

The post-export steps take any exported fp32 ONNX file, however it was produced. Nodes kept in fp32 are chosen by
op type and position in the graph (``exclude``: the i-th MatMul, the last one …) or by globs over node names and
module paths (``exclude_nodes``), so a recipe does not depend on the exporter's node names.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from zoo.errors import ZooError
from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique

CHECK_ROWS = 64  # test rows on which the quantized graph is compared with the fp32 graph


class Calibration(Params):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    samples: int = Field(128, ge=1, le=100_000)  # rows from the train split
    percentile: float = Field(99.999, gt=90, le=100)


class NodeSelector(Params):
    """Nodes of one op type picked by position in graph order (0 = first, -1 = last) in the graph being quantized
    (the fused one when ``fuse`` is set)."""

    op_type: str  # e.g. MatMul, Attention, Gather
    index: list[int] = Field(min_length=1)


class Int8Params(Params):
    mode: Literal["static", "dynamic"] = "static"
    per_channel: bool = True
    activations: Literal["int8", "uint8", "int16", "uint16"] = "uint8"  # static only; int16 = w8a16
    weights: Literal["int8", "uint8"] = "int8"
    isa: Literal["auto", "avx2", "avx512", "avx512-vnni", "arm64"] = "auto"  # auto: the target's isa
    calibration: Calibration = Calibration()
    max_length: int = Field(128, ge=8, le=8192)
    op_types: list[str] | None = None  # quantize only these ONNX op types (e.g. [MatMul, Gather]); None: all supported
    # nodes kept in fp32: globs over each node's name or its module path + op type (e.g. "*/output/dense/MatMul"),
    # which is the same path whichever exporter wrote the graph (see _onnx.node_paths)
    exclude_nodes: list[str] = []
    exclude: list[NodeSelector] = []  # nodes kept in fp32, by op type and position (exporter-independent)
    fuse: Literal["none", "bert"] = "none"  # ONNX Runtime transformer fusions before quantizing (model_type)
    exporter: Literal["torchscript", "dynamo"] = "torchscript"  # torch.onnx.export(dynamo=...)


@dataclass(frozen=True)
class Preset:
    """How the integer kernels of one ISA want their inputs; recorded in provenance."""

    isa: str
    reduce_range: bool  # 7-bit weights: avoids the u8s8 overflow of VPMADDUBSW on x86 without VNNI
    weight_symmetric: bool
    activation_symmetric: bool
    note: str


PRESETS = {
    "avx512-vnni": Preset("avx512-vnni", False, True, False, "VNNI dot products: full-range u8 activations"),
    "amx": Preset("amx", False, True, False, "AMX tiles: full-range u8 activations, s8 weights"),
    "avx512": Preset("avx512", False, True, False, "AVX-512 u8s8: full range, per-channel weights"),
    "avx2": Preset("avx2", True, True, False, "AVX2 without VNNI: 7-bit weights avoid int16 saturation"),
    "arm64": Preset("arm64", False, True, False, "ARM64 dot products: u8 activations, symmetric s8 weights"),
    "neon": Preset("neon", False, True, False, "ARM NEON: u8 activations, symmetric s8 weights"),
}
DEFAULT_ISA = "avx512"  # a target without an isa (e.g. a GPU) gets the common x86 server preset


class Int8(Technique):
    name = "onnx-int8"
    kinds = frozenset({Kind.int8})
    tasks = frozenset({"text-classification"})
    params = Int8Params
    formats = ("onnx",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from transformers import AutoTokenizer

        from zoo.techniques import _onnx, _train

        p: Int8Params = ctx.params  # type: ignore[assignment]
        _train.set_threads()
        preset = preset_for(p.isa, ctx.target.isa)
        splits = ctx.splits()
        tokenizer = AutoTokenizer.from_pretrained(ctx.parent_dir)
        key = f"{ctx.model_id}:{ctx.variant_id}"
        with tempfile.TemporaryDirectory(prefix="zoo-int8-") as tmp:
            ctx.log(f"{key}: exporting ONNX from the fp32 parent")
            fp32_path = _onnx.export(ctx.parent_dir, Path(tmp) / "export", p.exporter)
            _onnx.clear_value_info(fp32_path)
            out_path = ctx.out_dir / "model.onnx"
            rows = splits.calibration.head(p.calibration.samples) if p.mode == "static" else None
            if rows is not None and len(rows) < p.calibration.samples:
                ctx.log(f"{key}: only {len(rows)} calibration rows (dataset.split.calibration); using them all")
            ctx.log(f"{key}: {'bert graph fusions, ' if p.fuse != 'none' else ''}{p.mode} quantization"
                    + (f", {p.calibration.method} calibration on {len(rows)} rows" if rows is not None else "")
                    + f", {preset.isa} preset")
            steps = quantize_exported(fp32_path, out_path, p, preset, tokenizer, rows.inputs if rows else None,
                                      f"recipes/{ctx.recipe_name}.yaml", ctx.progress, key,
                                      _model_shape(ctx.parent_dir))
            excluded = steps["excluded"]
            calibration: dict[str, Any] | None = None
            if rows is not None:
                calibration = {**splits.describe("calibration"), "method": p.calibration.method,
                               "samples": len(rows)}
                if p.calibration.method == "percentile":
                    calibration["percentile"] = p.calibration.percentile
            texts = splits.test.inputs[:CHECK_ROWS]
            reference = _onnx.logits(_onnx.session(fp32_path), tokenizer, texts, p.max_length)
            for f in fp32_path.parent.iterdir():
                if f.name != "model.onnx" and f.is_file():
                    shutil.copy2(f, ctx.out_dir / f.name)
        got = _onnx.logits(_onnx.session(out_path), tokenizer, texts, p.max_length)
        check = {"rows": len(texts), **_onnx.agreement(reference, got)}
        ctx.log(f"{key}: int8 vs fp32 ONNX on {len(texts)} test rows: top-1 agreement {check['top1_agreement']:.1%}")
        extra: dict[str, Any] = {
            "format": "onnx",
            "dtype": "int8",
            "label_names": splits.label_names,
            "max_length": p.max_length,
            "params_count": _params_count(ctx.parent_dir, out_path),
            "quantization": {"mode": p.mode, "format": "QDQ" if p.mode == "static" else "QOperator",
                             "per_channel": p.per_channel, "weights": p.weights,
                             "activations": p.activations if p.mode == "static" else "uint8 (dynamic)",
                             "op_types": p.op_types, "exclude_nodes": p.exclude_nodes,
                             "exclude": [e.model_dump() for e in p.exclude], "excluded": len(excluded),
                             "excluded_nodes": excluded, "exporter": f"torch.onnx ({p.exporter})",
                             "fused": steps["fused"], "preset": asdict(preset), "check": check},
        }
        if calibration is not None:
            extra["calibration"] = calibration
        return extra


def quantize_exported(fp32_path: Path, out_path: Path, p: Int8Params, preset: Preset, tokenizer: Any,
                      calibration_texts: list[str] | None, recipe: str, progress: Any = None, key: str = "int8",
                      shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """The post-export steps: an exported fp32 ONNX file → (fused) → quantized ``out_path``.

    Args:
        calibration_texts: rows for static calibration (None for dynamic).
        recipe: where the parameters came from, for error messages.
        shape: (attention heads, hidden size) for the fusions; (0, 0) lets ONNX Runtime detect them.

    Returns:
        ``{"fused": {op type: count} or None, "excluded": [node names kept fp32]}``.

    Raises:
        ZooError: the fusion or quantization failed, or an exclusion matches no node.
    """
    src = fp32_path
    fused = None
    if p.fuse != "none":
        src = out_path.with_name("model-fused-fp32.onnx")
        fused = fuse(fp32_path, src, p.fuse, *(shape or (0, 0)))
    try:
        excluded = expand_nodes(src, p.exclude_nodes, f"{recipe}: exclude_nodes")
        excluded += [n for n in select_nodes(src, p.exclude, f"{recipe}: exclude") if n not in excluded]
        if p.mode == "static":
            _quantize_static(src, out_path, p, preset, tokenizer, calibration_texts or [], excluded, progress, key)
        else:
            _quantize_dynamic(src, out_path, p, preset, excluded)
    finally:
        if src != fp32_path:
            src.unlink(missing_ok=True)
    return {"fused": fused, "excluded": excluded}


def fuse(src: Path, dest: Path, model_type: str, num_heads: int = 0, hidden_size: int = 0) -> dict[str, int]:
    """ONNX Runtime's transformer graph fusions (attention, LayerNorm/SkipLayerNorm, GELU, embeddings) on ``src``.

    Returns:
        How many nodes of each fused op type the graph has now, e.g. ``{"Attention": 6, "SkipLayerNormalization":
        12}``.

    Raises:
        ZooError: the optimizer failed.
    """
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    try:
        # opt_level 0: the Python fusions only; ONNX Runtime's own C++ passes still run when the session loads
        model = optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=0, use_gpu=False)
        model.save_model_to_file(str(dest))
    except Exception as e:  # the optimizer raises many types; keep the first line
        raise ZooError(f"graph fusion ({model_type}) of '{src.name}' failed: "
                       f"{str(e).splitlines()[0] if str(e) else e!r}") from e
    stats = model.get_fused_operator_statistics()
    return {k: int(v) for k, v in stats.items() if v}


def select_nodes(model_path: Path, selectors: list[NodeSelector], field: str) -> list[str]:
    """Names of the nodes picked by op type and position (graph order; negative positions count from the end).

    Raises:
        ZooError: a selector names an op type the graph lacks or a position beyond its count.
    """
    if not selectors:
        return []
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    out: list[str] = []
    for sel in selectors:
        of_type = [n for n in nodes if n.op_type == sel.op_type]
        if not of_type:
            types = sorted({n.op_type for n in nodes})
            raise ZooError(f"{field}: the graph has no {sel.op_type} node (it has {', '.join(types)})")
        for i in sel.index:
            if not -len(of_type) <= i < len(of_type):
                raise ZooError(f"{field}: {sel.op_type} index {i} is out of range: the graph has {len(of_type)} "
                               f"{sel.op_type} nodes (use 0..{len(of_type) - 1} or negative from the end)")
            node = of_type[i]
            if not node.name:  # the quantizer excludes nodes by name only
                raise ZooError(f"{field}: {sel.op_type} node {i} has no name, so it cannot be kept in fp32: "
                               f"export with node names (torch.onnx.export names every node)")
            if node.name not in out:
                out.append(node.name)
    return out


def _model_shape(parent_dir: Path) -> tuple[int, int]:
    """(attention heads, hidden size) from the parent's config.json; (0, 0) when it does not say."""
    import json

    cfg = json.loads((parent_dir / "config.json").read_text()) if (parent_dir / "config.json").is_file() else {}
    return int(cfg.get("num_attention_heads", 0)), int(cfg.get("hidden_size", 0))


def preset_for(isa: str, target_isa: str | None) -> Preset:
    """The quantization preset for ``isa``, or for the target's isa when ``isa`` is "auto"."""
    chosen = target_isa if isa == "auto" else isa
    return PRESETS[chosen or DEFAULT_ISA]


def expand_nodes(model_path: Path, patterns: list[str], field: str) -> list[str]:
    """The names of the graph's nodes whose name or module path (:func:`zoo.techniques._onnx.node_paths`) matches
    any of ``patterns`` (exact names or fnmatch globs).

    Raises:
        ZooError: a pattern matches no node (a typo would otherwise silently quantize everything).
    """
    import fnmatch

    import onnx

    from zoo.techniques._onnx import node_paths

    if not patterns:
        return []
    nodes = node_paths(onnx.load(str(model_path), load_external_data=False).graph)
    out: list[str] = []
    for pattern in patterns:
        hits = [name for name, path in nodes
                if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(path, pattern)]
        if not hits:
            paths = [path for _, path in nodes if path.startswith("/")] or [path for _, path in nodes]
            example = paths[len(paths) // 2] if paths else "(empty graph)"
            raise ZooError(f"{field}: '{pattern}' matches no node of the exported graph "
                           f"(module paths look like '{example}')")
        out += [h for h in hits if h not in out]
    return out


def _qtype(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8, "int16": QuantType.QInt16,
            "uint16": QuantType.QUInt16}[name]


def _common_options(preset: Preset) -> dict[str, Any]:
    import onnx

    # DefaultTensorType: the exported BERT graph has tensors whose type shape inference cannot tell
    return {"DefaultTensorType": onnx.TensorProto.FLOAT, "WeightSymmetric": preset.weight_symmetric,
            "ActivationSymmetric": preset.activation_symmetric}


def _quantize_static(src: Path, dest: Path, p: Int8Params, preset: Preset, tokenizer: Any, texts: list[str],
                     excluded: list[str], progress: Any, key: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[p.calibration.method]
    options = _common_options(preset)
    if p.calibration.method == "percentile":
        options["CalibPercentile"] = p.calibration.percentile
    if p.activations in ("int16", "uint16"):
        options["UseQDQContribOps"] = True  # 16-bit Q/DQ are ONNX Runtime contrib ops before opset 21
    # histogram methods stack every sample of a tensor into one array, so their rows need one common length
    pad = p.calibration.method != "minmax"
    reader = _Reader(src, tokenizer, texts, p.max_length, pad, progress, f"{key} calibrate")
    try:
        quantize_static(str(src), str(dest), reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=p.op_types,
                        per_channel=p.per_channel, reduce_range=preset.reduce_range,
                        activation_type=_qtype(p.activations), weight_type=_qtype(p.weights),
                        nodes_to_exclude=excluded or None, calibrate_method=method, extra_options=options)
    except ZooError:
        raise
    except Exception as e:  # onnxruntime raises many types; keep the first line
        raise ZooError(f"{key}: static quantization failed: {str(e).splitlines()[0] if str(e) else e!r}") from e


def _quantize_dynamic(src: Path, dest: Path, p: Int8Params, preset: Preset, excluded: list[str]) -> None:
    from onnxruntime.quantization import quantize_dynamic

    try:
        quantize_dynamic(str(src), str(dest), op_types_to_quantize=p.op_types, per_channel=p.per_channel,
                         reduce_range=preset.reduce_range, weight_type=_qtype(p.weights),
                         nodes_to_exclude=excluded or None, extra_options=_common_options(preset))
    except Exception as e:  # onnxruntime raises many types; keep the first line
        raise ZooError(f"dynamic quantization of '{src.name}' failed: {str(e).splitlines()[0] if str(e) else e!r}"
                       ) from e


class _Reader:
    """Feeds calibration rows one at a time: unpadded, so padding never widens an activation's range, or (``pad``)
    padded to the longest calibration row."""

    def __init__(self, model_path: Path, tokenizer: Any, texts: list[str], max_length: int, pad: bool, progress: Any,
                 desc: str):
        import onnx

        from zoo import progress as progress_mod

        self.names = {i.name for i in onnx.load(str(model_path), load_external_data=False).graph.input}
        self.tokenizer, self.texts, self.max_length = tokenizer, texts, max_length
        self.pad_to = max(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
                          ) if pad else None
        self.progress = progress
        self.task = progress_mod.add(progress, desc, len(texts)) if progress is not None else None
        self.pos = 0

    def get_next(self) -> dict[str, Any] | None:
        import numpy as np

        if self.pos >= len(self.texts):
            return None
        enc = self.tokenizer([self.texts[self.pos]], truncation=True, max_length=self.pad_to or self.max_length,
                             padding="max_length" if self.pad_to else False, return_tensors="np")
        self.pos += 1
        if self.task is not None:
            self.progress.update(self.task, advance=1)
        return {k: v.astype(np.int64) for k, v in enc.items() if k in self.names}

    def rewind(self) -> None:
        self.pos = 0

    def __len__(self) -> int:
        return len(self.texts)


def _params_count(parent_dir: Path, graph_path: Path) -> int:
    """The parent's parameter count (quantizing changes bytes, not parameters); else the graph's weight elements."""
    from zoo.formats import onnx_params
    from zoo.techniques._train import parent_provenance

    count = parent_provenance(parent_dir).get("params_count")
    return count if isinstance(count, int) else onnx_params(graph_path)
