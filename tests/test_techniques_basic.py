"""The fp32 (finetune), w16a16 (half) and int8 (onnx-int8) techniques, end to end on the tiny zoo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from zoo import build, plan, registry
from zoo.sources import sha256_file
from zoo.store import Store

MODEL = "tiny-sentiment"
VARIANTS = ("fp32", "w16a16", "int8")


def _build(registry_path: Path, variants=VARIANTS, force: bool = False) -> dict[str, build.Outcome]:
    loaded = registry.load(registry_path)
    nodes = plan.select(plan.make(loaded), [(MODEL, v) for v in variants])
    outcomes = build.build(loaded, Store.for_registry(loaded.path), nodes, force=force, log=lambda *_: None)
    return {o.node.variant_id: o for o in outcomes}


@pytest.fixture(scope="module")
def built(_tiny_zoo_template, tmp_path_factory) -> tuple[Path, dict[str, build.Outcome]]:
    """The tiny project with fp32, w16a16 and int8 built once for this module."""
    dest = tmp_path_factory.mktemp("basic") / "project"
    shutil.copytree(_tiny_zoo_template, dest, ignore=shutil.ignore_patterns(".zoo"))
    return dest / "registry.yaml", _build(dest / "registry.yaml")


@pytest.fixture(scope="module")
def test_rows(built):
    from zoo.data import load_splits

    reg = registry.load(built[0])
    return load_splits(reg.model(MODEL), reg.root).test


def _torch_logits(path: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.inference_mode():
        return model(**tok(texts, padding=True, return_tensors="pt")).logits.float().numpy()


def _ort_logits(path: Path, texts: list[str]) -> np.ndarray:
    """Logits of the ONNX graph in ``path`` through plain ONNX Runtime, as the int8 card's snippet runs it."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    enc = tok(texts, padding=True, return_tensors="np")
    return session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0].astype(np.float32)


def test_all_three_variants_build(built):
    _, outcomes = built
    assert [outcomes[v].status for v in VARIANTS] == ["built"] * 3


def test_fp32_learns_the_tiny_task(built, test_rows):
    path = built[1]["fp32"].path
    config = json.loads((path / "config.json").read_text())
    assert config["id2label"] == {"0": "rotten", "1": "fresh"}
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    predicted = _torch_logits(path, test_rows.inputs).argmax(-1)
    accuracy = float((predicted == np.array(test_rows.labels)).mean())
    assert accuracy >= 0.8, f"fp32 accuracy {accuracy:.2f} on the tiny test split"


def test_fp32_training_facts_are_recorded(built):
    prov = json.loads((built[1]["fp32"].path / "provenance.json").read_text())
    training = prov["training"]
    assert training["steps"] == 60  # 160 rows / batch 16 × 6 epochs
    assert 0 < training["final_loss"] < 0.69  # below the loss of a coin toss
    assert prov["dtype"] == "fp32" and prov["format"] == "transformers" and prov["params_count"] > 0


def test_w16a16_safetensors_and_onnx_load_and_agree_with_fp32(built, test_rows):
    from safetensors import safe_open

    fp32, half = built[1]["fp32"].path, built[1]["w16a16"].path
    with safe_open(str(half / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}  # noqa: SIM118 (not a dict)
    texts = test_rows.inputs[:8]
    reference = _torch_logits(fp32, texts)
    assert np.allclose(_torch_logits(half, texts), reference, atol=2e-2)
    onnx_logits = _ort_logits(half / "onnx", texts)
    assert np.allclose(onnx_logits, reference, atol=2e-2)
    prov = json.loads((half / "provenance.json").read_text())
    assert prov["onnx"]["check"]["top1_agreement"] == 1.0


def test_int8_is_a_quantized_onnx_graph_close_to_fp32(built, test_rows):
    import onnx

    fp32, int8 = built[1]["fp32"].path, built[1]["int8"].path
    graph = onnx.load(str(int8 / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2 for t in graph.initializer)
    texts = test_rows.inputs
    reference, got = _torch_logits(fp32, texts), _ort_logits(int8, texts)
    assert float((reference.argmax(-1) == got.argmax(-1)).mean()) >= 0.95
    assert np.abs(reference - got).max() < 0.25


def test_int8_provenance_records_calibration_and_file_hashes(built):
    path = built[1]["int8"].path
    prov = json.loads((path / "provenance.json").read_text())
    assert prov["format"] == "onnx" and prov["dtype"] == "int8"
    cal = prov["calibration"]
    assert (cal["method"], cal["samples"], cal["split"]) == ("minmax", 16, "calibration")
    assert len(cal["indices_sha256"]) == 16 and cal["source"] == "file:assets/reviews.csv"
    assert prov["quantization"]["preset"]["isa"] == "avx512"  # the target's isa, recipe says isa: auto
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {"provenance.json"}
    assert set(prov["files"]) == files
    assert all(prov["files"][f] == sha256_file(path / f) for f in files)


def test_second_build_skips_everything(built):
    again = _build(built[0])
    assert {o.status for o in again.values()} == {"skipped"}
    assert {v: o.path for v, o in again.items()} == {v: o.path for v, o in built[1].items()}


def test_training_is_seeded(tiny_zoo):
    first = _build(tiny_zoo, ("fp32",))["fp32"].path
    kept = first.parent.parent / "kept"
    shutil.copytree(first, kept)
    second = _build(tiny_zoo, ("fp32",), force=True)["fp32"].path
    texts = ["the film was good", "a dull and boring story"]
    assert np.allclose(_torch_logits(kept, texts), _torch_logits(second, texts), atol=1e-5)


def test_lora_method_merges_into_a_plain_checkpoint(tiny_zoo):
    recipe = tiny_zoo.parent / "recipes" / "finetune.yaml"
    recipe.write_text(recipe.read_text() + "method: lora\nlora_r: 4\nlora_alpha: 8\n")
    path = _build(tiny_zoo, ("fp32",))["fp32"].path
    assert not (path / "adapter_config.json").exists()
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora" in k]  # noqa: SIM118 (not a dict)
    assert _torch_logits(path, ["the film was good"]).shape == (1, 2)


def test_dynamic_int8_builds_and_runs(tiny_zoo):
    recipe = tiny_zoo.parent / "recipes" / "int8.yaml"
    recipe.write_text("technique: onnx-int8\nmode: dynamic\nisa: avx2\nmax_length: 16\n")
    path = _build(tiny_zoo, ("int8",))["int8"].path
    prov = json.loads((path / "provenance.json").read_text())
    assert "calibration" not in prov
    assert prov["quantization"]["preset"]["reduce_range"] is True
    assert _ort_logits(path, ["the film was good"]).shape == (1, 2)


def test_bad_recipe_value_is_rejected_by_validate_in_one_line(tiny_zoo):
    from typer.testing import CliRunner

    from zoo.cli import app

    recipe = tiny_zoo.parent / "recipes" / "finetune.yaml"
    recipe.write_text(recipe.read_text().replace("epochs: 6", "epochs: -1"))
    result = CliRunner().invoke(app, ["validate", "--registry", str(tiny_zoo)])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "finetune.yaml" in lines[0] and "epochs" in lines[0], result.output


@pytest.mark.parametrize(("isa", "target_isa", "expected", "reduce_range"), [
    ("auto", "avx512-vnni", "avx512-vnni", False),
    ("auto", "avx2", "avx2", True),
    ("auto", None, "avx512", False),
    ("arm64", "avx512", "arm64", False),
])
def test_isa_preset(isa, target_isa, expected, reduce_range):
    from zoo.techniques.int8 import preset_for

    preset = preset_for(isa, target_isa)
    assert (preset.isa, preset.reduce_range) == (expected, reduce_range)


def test_excluded_nodes_stay_fp32(tiny_zoo):
    import onnx

    recipe = tiny_zoo.parent / "recipes" / "int8.yaml"
    recipe.write_text("technique: onnx-int8\nop_types: [MatMul]\nexclude_nodes: ['*layer.0/*']\nmax_length: 16\n"
                      "calibration: {samples: 8}\n")
    path = _build(tiny_zoo, ("int8",))["int8"].path
    graph = onnx.load(str(path / "model.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    fp32_fed = {n.name for n in matmuls if producers.get(n.input[0]) != "DequantizeLinear"}
    assert fp32_fed and all("layer.0/" in name for name in fp32_fed)
    assert any(producers.get(n.input[0]) == "DequantizeLinear" for n in matmuls)
    prov = json.loads((path / "provenance.json").read_text())
    assert prov["quantization"]["excluded"] >= len(fp32_fed)
    assert prov["calibration"]["samples"] == 8


def test_exclude_pattern_that_matches_nothing_is_an_error(tiny_zoo):
    from zoo.errors import ZooError

    recipe = tiny_zoo.parent / "recipes" / "int8.yaml"
    recipe.write_text("technique: onnx-int8\nexclude_nodes: ['*/no_such_layer/*']\nmax_length: 16\n")
    with pytest.raises(ZooError, match=r"recipes/int8.yaml: exclude_nodes: '\*/no_such_layer/\*' matches no node"):
        _build(tiny_zoo, ("int8",))
