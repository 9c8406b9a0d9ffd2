"""torch.onnx export of the text classifier (zoo/techniques/_onnx.py) and the exporter-independent node selection
the int8 recipes' ``exclude_nodes`` rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import make_tiny_bert

TEXTS = ["the film was great", "a dull and tedious plot", "acting"]
EXCLUDE = ["*/attention/self/MatMul*", "*/attention/output/dense/MatMul", "*[0-9]/output/dense/MatMul"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = make_tiny_bert(tmp_path_factory.mktemp("base"), layers=2)
    out = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=2).save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=["torchscript", "dynamo"])
def exported(request, classifier, tmp_path_factory) -> tuple[str, Path]:
    from zoo.techniques import _onnx

    return request.param, _onnx.export(classifier, tmp_path_factory.mktemp(request.param), request.param)


def test_export_matches_pytorch_and_loads_with_plain_onnxruntime(classifier, exported):
    from transformers import AutoTokenizer

    from zoo.families.text_classification.loaders import load_classifier
    from zoo.techniques import _onnx

    _, path = exported
    tok = AutoTokenizer.from_pretrained(classifier)
    reference = _onnx.torch_logits(classifier, tok, TEXTS, 32)
    got = _onnx.logits(_onnx.session(path), tok, TEXTS, 32)  # a padded batch: dynamic batch and sequence axes
    assert np.abs(got - reference).max() < 1e-4
    loaded = load_classifier(path.parent)  # config + tokenizer written beside the graph
    assert loaded.runtime == "onnxruntime" and np.abs(loaded.logits(TEXTS, 32) - reference).max() < 1e-4


def test_exclude_globs_select_the_same_modules_whichever_exporter_named_the_nodes(exported):
    import onnx

    from zoo.techniques import _onnx
    from zoo.techniques.int8 import expand_nodes

    exporter, path = exported
    paths = dict(_onnx.node_paths(onnx.load(str(path)).graph))
    for pattern, per_layer in zip(EXCLUDE, (2, 1, 1), strict=True):  # QK and AV products; two output projections
        hits = expand_nodes(path, [pattern], "exclude_nodes")
        assert len(hits) == 2 * per_layer, (exporter, pattern, hits)
        assert all("/MatMul" in paths[h] and "/encoder/layer." in paths[h] for h in hits)
    if exporter == "dynamo":  # generic names: only the module path can match
        assert all(h.startswith("node_") for h in expand_nodes(path, EXCLUDE, "exclude_nodes"))


def test_a_glob_that_matches_nothing_is_one_line_naming_the_field(exported):
    from zoo.errors import ZooError
    from zoo.techniques.int8 import expand_nodes

    with pytest.raises(ZooError, match=r"^recipes/x.yaml: exclude_nodes: '\*/no_such/MatMul' matches no node.*"
                                       r"module paths look like '/"):
        expand_nodes(exported[1], ["*/no_such/MatMul"], "recipes/x.yaml: exclude_nodes")


def test_dynamo_graph_quantizes_with_its_excluded_nodes_kept_fp32(classifier, exported, tmp_path):
    import onnx
    from transformers import AutoTokenizer

    from zoo.techniques import _onnx
    from zoo.techniques.int8 import Int8Params, _quantize_dynamic, expand_nodes, preset_for

    exporter, path = exported
    src = tmp_path / "fp32.onnx"
    src.write_bytes(path.read_bytes())
    _onnx.clear_value_info(src)  # the dynamo exporter's symbolic shapes break the quantizer's shape inference
    excluded = expand_nodes(src, EXCLUDE, "exclude_nodes")
    p = Int8Params(mode="dynamic", op_types=["MatMul"], exclude_nodes=EXCLUDE, exporter=exporter)
    _quantize_dynamic(src, tmp_path / "int8.onnx", p, preset_for("auto", "avx512"), excluded)
    names = {n.name: n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert all(names.get(n) == "MatMul" for n in excluded)  # kept as float MatMuls
    assert any(t == "MatMulInteger" for t in names.values())
    tok = AutoTokenizer.from_pretrained(classifier)
    ref = _onnx.logits(_onnx.session(src), tok, TEXTS, 32)
    got = _onnx.logits(_onnx.session(tmp_path / "int8.onnx"), tok, TEXTS, 32)
    assert (ref.argmax(-1) == got.argmax(-1)).mean() >= 2 / 3 and np.abs(ref - got).max() < 0.5
