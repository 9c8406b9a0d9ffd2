"""w16a16: the parent's weights and activations in fp16 or bf16, as safetensors and an fp16 ONNX graph."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from zoo.errors import ZooError
from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique

CHECK_ROWS = 32  # test rows on which the fp16 ONNX graph is compared with the fp32 parent


class HalfParams(Params):
    dtype: Literal["fp16", "bf16"] = "fp16"
    onnx: bool = True  # also write onnx/model.onnx in fp16 (bf16 has no ONNX Runtime CPU kernels)


class Half(Technique):
    name = "half"
    kinds = frozenset({Kind.w16a16})
    tasks = frozenset({"text-classification"})
    params = HalfParams

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from zoo.techniques import _train

        p: HalfParams = ctx.params  # type: ignore[assignment]
        _train.set_threads()
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[p.dtype]
        tokenizer = AutoTokenizer.from_pretrained(ctx.parent_dir)
        model = AutoModelForSequenceClassification.from_pretrained(ctx.parent_dir, dtype=torch.float32).to(dtype)
        _train.save_with_tokenizer(model, tokenizer, ctx.out_dir)
        splits = ctx.splits()
        max_length = _max_length(ctx.parent_dir)
        extra: dict[str, Any] = {
            "format": "transformers",
            "dtype": p.dtype,
            "label_names": splits.label_names,
            "max_length": max_length,
            "params_count": _train.params_count(model),
        }
        if p.onnx:
            extra["onnx"] = _write_onnx(ctx, tokenizer, splits.test.inputs[:CHECK_ROWS], max_length)
        return extra


def _write_onnx(ctx: BuildContext, tokenizer: Any, texts: list[str], max_length: int) -> dict[str, Any]:
    """Export the fp32 parent, convert the graph to fp16 with fp32 inputs/outputs, check it runs, write ``onnx/``."""
    import numpy as np
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from zoo.techniques import _onnx

    dest = ctx.out_dir / "onnx"
    with tempfile.TemporaryDirectory(prefix="zoo-onnx-") as tmp:
        ctx.log(f"{ctx.model_id}:{ctx.variant_id}: exporting ONNX and converting it to fp16")
        fp32_path = _onnx.export(ctx.parent_dir, Path(tmp))
        # keep_io_types: callers feed int64 ids and read float32 logits, whatever the graph computes in
        graph = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
        fp32_path.unlink()
        shutil.copytree(tmp, dest)
    onnx.save(graph, str(dest / "model.onnx"))
    _mark_fp16(dest / "config.json")
    reference = _onnx.torch_logits(ctx.parent_dir, tokenizer, texts, max_length)
    got = _onnx.logits(_onnx.session(dest / "model.onnx"), tokenizer, texts, max_length)
    if not np.isfinite(got).all():
        raise ZooError(f"{ctx.model_id}:{ctx.variant_id}: the fp16 ONNX graph gives non-finite logits: "
                       "set onnx: false in the recipe or use dtype: bf16 for the safetensors only")
    return {"path": "onnx/model.onnx", "dtype": "fp16", "opset": graph.opset_import[0].version,
            "check": {"rows": len(texts), **_onnx.agreement(reference, got)}}


def _mark_fp16(config_path: Path) -> None:
    """Say in the ONNX folder's config that its weights are fp16 (the exporter copied the fp32 parent's dtype)."""
    import json

    config = json.loads(config_path.read_text())
    for key in ("dtype", "torch_dtype"):
        if key in config:
            config[key] = "float16"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _max_length(model_dir: Path) -> int:
    """The sequence length the parent was built for (its provenance), else its position-embedding size."""
    import json

    from zoo.techniques._train import parent_provenance

    value = parent_provenance(model_dir).get("max_length")
    if isinstance(value, int):
        return value
    return int(json.loads((model_dir / "config.json").read_text()).get("max_position_embeddings", 512))
