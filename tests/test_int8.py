"""int8's post-export steps: transformer fusions, then quantization, with nodes kept fp32 by op type and position."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zoo import build, plan, registry
from zoo.errors import ZooError
from zoo.store import Store


def _build_int8(tiny_zoo: Path, recipe: str) -> Path:
    (tiny_zoo.parent / "recipes" / "int8.yaml").write_text(recipe)
    loaded = registry.load(tiny_zoo)
    store = Store.for_registry(loaded.path)
    nodes = plan.select(plan.make(loaded), [("tiny-sentiment", "int8")])
    build.build(loaded, store, nodes, log=lambda *_: None)
    node = next(n for n in nodes if n.variant_id == "int8")
    return store.artifact(node.hash)


def _logits(path: Path, texts: list[str]) -> np.ndarray:
    from transformers import AutoTokenizer

    from zoo.techniques import _onnx

    return _onnx.logits(_onnx.session(path / "model.onnx"), AutoTokenizer.from_pretrained(path), texts, 16)


def test_fused_dynamic_int8_quantizes_the_fused_attention_and_keeps_chosen_nodes_fp32(tiny_zoo):
    import onnx

    path = _build_int8(tiny_zoo, "technique: onnx-int8\nmode: dynamic\nfuse: bert\nop_types: [MatMul, Attention]\n"
                                 "exclude: [{op_type: MatMul, index: [-1]}, {op_type: Attention, index: [0]}]\n"
                                 "max_length: 16\n")
    graph = onnx.load(str(path / "model.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert "QAttention" in ops and "SkipLayerNormalization" in ops  # fused, then quantized
    assert ops.count("Attention") == 1  # the excluded first attention stays fp32 …
    assert ops.count("QAttention") == 3  # … the other three of the 4 layers are int8
    prov = json.loads((path / "provenance.json").read_text())
    q = prov["quantization"]
    assert q["fused"]["Attention"] == 4 and q["excluded"] == 2 and len(q["excluded_nodes"]) == 2
    assert q["check"]["top1_agreement"] >= 0.9
    assert _logits(path, ["the film was good", "dull and bad"]).shape == (2, 2)


def test_a_position_beyond_the_graph_is_a_one_line_error(tiny_zoo):
    with pytest.raises(ZooError, match=r"recipes/int8.yaml: exclude: MatMul index 999 is out of range"):
        _build_int8(tiny_zoo, "technique: onnx-int8\nmode: dynamic\nexclude: [{op_type: MatMul, index: [999]}]\n"
                              "max_length: 16\n")
    with pytest.raises(ZooError, match=r"exclude: the graph has no Conv node"):
        _build_int8(tiny_zoo, "technique: onnx-int8\nmode: dynamic\nexclude: [{op_type: Conv, index: [0]}]\n"
                              "max_length: 16\n")
