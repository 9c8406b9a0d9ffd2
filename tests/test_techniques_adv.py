"""qlora-4bit and distilled, built through zoo.build on the tiny project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import NEGATIVE, POSITIVE, make_tiny_bert

from zoo import build, plan, registry
from zoo.errors import ZooError
from zoo.store import Store
from zoo.techniques import distill, qlora

QLORA_RECIPE = "technique: qlora-nf4\nr: 8\nalpha: 16\nepochs: 6\nlr: 5.0e-3\nbatch_size: 16\nmax_length: 16\n"
PROBES = [f"the {f} was {w}" for f in ("film", "plot", "acting") for w in POSITIVE + NEGATIVE]


def _build(registry_path: Path, *variants: str) -> dict[str, Path]:
    loaded = registry.load(registry_path)
    nodes = plan.select(plan.make(loaded), [("tiny-sentiment", v) for v in variants])
    store = Store.for_registry(loaded.path)
    build.build(loaded, store, nodes, log=lambda *_: None)
    return {n.variant_id: store.artifact(n.hash) for n in nodes}


@pytest.fixture(scope="module")
def built(tmp_path_factory, _tiny_zoo_template) -> dict[str, Path]:
    """The tiny project's fp32, qlora-4bit and distilled variants, built once for this module.

    The tiny BERT is rebuilt 64 wide: bitsandbytes' packed AVX512-BF16 CPU kernel needs in_features to be a
    multiple of the NF4 block size (64), as every real model's is. LoRA on a randomly initialised encoder needs
    more steps than the shared tiny recipe gives it to learn the task.
    """
    import shutil

    root = tmp_path_factory.mktemp("adv") / "project"
    shutil.copytree(_tiny_zoo_template, root)
    shutil.rmtree(root / "assets" / "tiny-bert")
    make_tiny_bert(root / "assets" / "tiny-bert", hidden=64)
    (root / "recipes" / "qlora.yaml").write_text(QLORA_RECIPE)
    return _build(root / "registry.yaml", "qlora-4bit", "distilled")


def _provenance(path: Path) -> dict:
    return json.loads((path / "provenance.json").read_text())


def _predict(model, tokenizer, texts=PROBES) -> torch.Tensor:
    return qlora.logits(model, tokenizer, texts, max_length=16).argmax(-1)


def _accuracy(path: Path) -> float:
    """Accuracy on the tiny project's held-out test rows."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from zoo.data import load_splits

    loaded = registry.load(path.parents[2] / "registry.yaml")
    test = load_splits(loaded.model("tiny-sentiment"), loaded.root).test
    model = AutoModelForSequenceClassification.from_pretrained(path)  # in the dtype its config names
    predicted = _predict(model, AutoTokenizer.from_pretrained(path), test.inputs)
    return (predicted == torch.tensor(test.labels)).float().mean().item()


def test_qlora_merged_root_is_4bit_and_reloads(built):
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoModelForSequenceClassification

    out = built["qlora-4bit"]
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    assert config["id2label"] == {"0": "rotten", "1": "fresh"}
    # no dtype: the weights NF4 leaves alone are bf16, as config.json says (transformers 5.24 casts only some of them
    # when asked for float32, and the mixed model fails)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    encoder_linears = [m for n, m in model.named_modules() if ".encoder." in f".{n}" and isinstance(
        m, torch.nn.Linear)]
    assert encoder_linears and all(isinstance(m, Linear4bit) for m in encoder_linears)
    # transformers 5 would quantize the head too (LoRA then cannot train it; the CPU kernel cannot pack 2 outputs)
    assert config["quantization_config"]["llm_int8_skip_modules"] == ["classifier", "score"]
    assert type(model.classifier) is torch.nn.Linear
    assert _accuracy(out) >= 0.8


def test_one_cpu_kernel_guard_covers_exactly_the_unpackable_layers(built):
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoModelForSequenceClassification

    from zoo.nf4_guard import guard_cpu_kernel

    model = AutoModelForSequenceClassification.from_pretrained(built["qlora-4bit"], device_map="cpu")
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    unpackable = [m for m in layers if m.in_features % 64 or m.out_features % 32]
    assert guard_cpu_kernel(model) == len(unpackable)
    assert all(m.support_avx512bf16_for_cpu is False for m in unpackable)
    assert all(m.support_avx512bf16_for_cpu is not False for m in layers if m not in unpackable)
    model(input_ids=torch.tensor([[2, 5, 3]]))  # the first CPU call, where an unguarded narrow layer fails


def test_qlora_adapter_agrees_with_merged(built):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = built["qlora-4bit"]
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "SEQ_CLS" and "classifier" in adapter_config["modules_to_save"]
    assert adapter_config["base_model_name_or_path"] == "file:assets/tiny-bert"  # no build-machine path
    base = AutoModelForSequenceClassification.from_pretrained(
        out.parents[2] / "assets" / "tiny-bert", num_labels=2,
        quantization_config=qlora.quantization_config(qlora.QloraParams()), dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, out / "adapter")
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    agree = (_predict(adapted, tokenizer) == _predict(merged, tokenizer)).float().mean().item()
    assert agree >= 0.9


def test_qlora_provenance(built):
    prov = _provenance(built["qlora-4bit"])
    assert prov["format"] == "transformers" and prov["dtype"] == "nf4" and prov["quantization"] == "bnb-nf4"
    assert prov["adapter"] == "adapter" and "adapter/adapter_model.safetensors" in prov["files"]
    assert prov["backend"] == "peft" and prov["backend_reason"] == "no CUDA"
    assert prov["merge_check"]["agreement"] >= 0.9
    assert prov["training"]["steps"] == 60 and prov["label_names"] == ["rotten", "fresh"]
    assert prov["params_count"] > 50_000


def test_choose_backend_refuses_unsloth_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert qlora.choose_backend("auto") == ("peft", "no CUDA")
    with pytest.raises(ZooError, match="set backend: auto or peft"):
        qlora.choose_backend("unsloth")


@pytest.mark.gpu
def test_unsloth_backend_trains_on_cuda(tiny_zoo):
    pytest.importorskip("unsloth")
    recipe = tiny_zoo.parent / "recipes" / "qlora.yaml"
    recipe.write_text(recipe.read_text() + "backend: unsloth\n")
    out = _build(tiny_zoo, "qlora-4bit")["qlora-4bit"]
    assert _provenance(out)["backend"] in ("unsloth", "peft")


def test_distilled_student_has_kept_layers_and_learns(built):
    from transformers import AutoConfig

    out = built["distilled"]
    assert AutoConfig.from_pretrained(out).num_hidden_layers == 2
    prov = _provenance(out)
    assert prov["teacher"] == {"variant": "fp32", "hash": _provenance(built["fp32"])["hash"], "layers": 4,
                               "layers_kept": [0, 2], "params_count": prov["teacher"]["params_count"]}
    assert prov["params_count"] < prov["teacher"]["params_count"]
    assert prov["temperature"] == 2.0 and prov["alpha"] == 0.5 and prov["dtype"] == "fp32"
    assert _accuracy(out) >= 0.8


def test_spread_layers():
    assert distill.spread_layers(6, 3) == [0, 2, 4]
    assert distill.spread_layers(4, 2) == [0, 2]
    assert distill.spread_layers(12, 4) == [0, 3, 6, 9]
    assert distill.spread_layers(3, 3) == [0, 1, 2]
    with pytest.raises(ZooError, match="student_layers"):
        distill.spread_layers(4, 5)


def test_make_student_copies_chosen_teacher_layers(tmp_path):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(make_tiny_bert(tmp_path / "t", layers=4),
                                                                 num_labels=2)
    student = distill.make_student(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    for s_index, t_index in enumerate([1, 3]):
        s_state = student.bert.encoder.layer[s_index].state_dict()
        t_state = teacher.bert.encoder.layer[t_index].state_dict()
        assert s_state.keys() == t_state.keys()
        assert all(torch.equal(s_state[k], t_state[k]) for k in s_state)
    assert not torch.equal(student.bert.encoder.layer[0].attention.self.query.weight,
                           teacher.bert.encoder.layer[0].attention.self.query.weight)
    for name in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight"):
        assert torch.equal(student.state_dict()[name], teacher.state_dict()[name])


def test_kd_loss():
    torch.manual_seed(0)
    logits = torch.randn(8, 3)
    labels = torch.randint(0, 3, (8,))
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert distill.kd_loss(logits, logits.clone(), labels, 2.0, 1.0).abs().item() < 1e-6  # KL of equal logits
    assert torch.allclose(distill.kd_loss(logits, logits.clone(), labels, 2.0, 0.3), 0.7 * ce)
    other = torch.randn(8, 3)
    kl = distill.kd_loss(logits, other, labels, 3.0, 1.0)
    p_t = torch.softmax(other / 3, -1)
    expected = 9 * (p_t * (p_t.log() - torch.log_softmax(logits / 3, -1))).sum(-1).mean()
    assert kl.item() > 0 and torch.allclose(kl, expected, atol=1e-6)


def test_distill_refuses_base_teacher(tiny_zoo):
    text = tiny_zoo.read_text().replace("distilled: {kind: distilled, from: fp32", "distilled: {kind: distilled, "
                                                                                  "from: base")
    tiny_zoo.write_text(text)
    with pytest.raises(ZooError, match="needs a fine-tuned teacher"):
        _build(tiny_zoo, "distilled")
