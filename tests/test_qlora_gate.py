"""A variant trained from base (qlora-4bit) names what its gate compares it with: ``gate_of`` in registry.yaml."""

from __future__ import annotations

from pathlib import Path

from zoo import plan, registry
from zoo.evaluate import _reference

ROOT = Path(__file__).resolve().parent.parent


def _with_gate_of(tiny_zoo: Path, value: str | None) -> registry.Loaded:
    path = tiny_zoo
    text = path.read_text()
    line = "qlora-4bit: {kind: qlora-4bit, from: base, recipe: qlora, target: cuda"
    assert line in text
    if value:
        path.write_text(text.replace(line, f"{line}, gate_of: {value}"))
    return registry.load(path)


def test_qlora_from_base_is_ungated_without_gate_of_and_gated_with_it(tiny_zoo):
    before = _with_gate_of(tiny_zoo, None)
    nodes = {n.variant_id: n for n in plan.make(before)}
    assert _reference(before.model("tiny-sentiment"), nodes["qlora-4bit"]) is None  # of: parent, from: base
    after = _with_gate_of(tiny_zoo, "fp32")
    nodes_after = {n.variant_id: n for n in plan.make(after)}
    assert _reference(after.model("tiny-sentiment"), nodes_after["qlora-4bit"]) == "fp32"
    assert _reference(after.model("tiny-sentiment"), nodes_after["int8"]) == "fp32"  # the others keep of: parent
    # gate_of changes what the evaluation compares, not what is built: no artifact is rebuilt for it
    assert {k: n.hash for k, n in nodes.items()} == {k: n.hash for k, n in nodes_after.items()}


def test_shipped_qlora_variants_are_gated_against_fp32():
    loaded = registry.load(ROOT / "registry.yaml")
    for model_id in ("minilm-sentiment", "smollm2-hamlet"):
        node = next(n for n in plan.make(loaded) if n.model_id == model_id and n.variant_id == "qlora-4bit")
        assert node.parent == "base"
        assert _reference(loaded.model(model_id), node) == "fp32", model_id
