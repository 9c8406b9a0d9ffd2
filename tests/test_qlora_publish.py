"""qlora-4bit published the way the Hub's bnb-4bit repos are, on tiny models built from configs.

The root loads with plain ``from_pretrained`` as a 4-bit model (its config.json carries ``quantization_config``), the
adapter loads on it with ``PeftModel.from_pretrained`` as the tuned model, and everything bitsandbytes cannot
quantize is stored in 16 bits, so the root's bytes shrink well below fp32's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_lm import build, splits
from tiny import make_tiny_bert
from tiny_families import make_text, make_tiny_llama

from zoo.errors import ZooError

LM_RECIPE = {"steps": 25, "lr": 2e-2, "r": 4, "alpha": 8, "max_length": 32}


def tensor_dtypes(folder: Path) -> dict[str, str]:
    """Every tensor of ``folder/model.safetensors`` with its stored dtype ("F32", "BF16", "U8"), from the header."""
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "pt") as f:
        return {name: str(f.get_slice(name).get_dtype()) for name in f.keys()}  # noqa: SIM118 (no __iter__)


# --- the causal LM -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qlora-lm")
    make_tiny_llama(root / "base")
    make_text(root / "play.txt")
    out = root / "v"
    extra = build(root, "lm-qlora", "qlora-4bit", LM_RECIPE, root / "base", out, "base")
    (out / "provenance.json").write_text(json.dumps(extra))  # as zoo.build writes it
    return {"project": root, "out": out}


def test_lm_root_is_the_nf4_base_with_its_quantization_config(lm):
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    out = lm["out"]
    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert quant["load_in_4bit"] and quant["bnb_4bit_quant_type"] == "nf4"
    model = AutoModelForCausalLM.from_pretrained(out)  # what a Hub user types: no quantization arguments
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) == 4 * 7  # every projection of 4 layers
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    prov = json.loads((out / "provenance.json").read_text())
    assert (prov["root"], prov["storage_dtype"]) == ("nf4-base", "bf16") and "nn.Linear" in prov["unquantized"]


def test_lm_peft_on_the_root_is_the_tuned_model(lm):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from zoo.families.text_generation import load_generator

    out, test = lm["out"], splits(lm["project"]).test
    base = AutoModelForCausalLM.from_pretrained(out)
    ids = load_generator(out).tokenizer("good night sweet prince", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        before = base(input_ids=ids).logits.float()
        tuned = PeftModel.from_pretrained(base, out, subfolder="adapter").eval()
        after = tuned(input_ids=ids).logits.float()
    assert (before - after).abs().max() > 0.1  # the adapter changes the model
    gen = load_generator(out)  # the zoo's loader applies adapter/ because provenance says root nf4-base
    assert isinstance(gen.model, PeftModel)
    with torch.inference_mode():
        # the same model up to bf16 rounding (the zoo's loader may pick another bitsandbytes CPU kernel)
        assert (gen.model(input_ids=ids).logits.float() - after).abs().max() < 0.02
    bare = out.parent / "bare"
    shutil.copytree(out, bare, ignore=shutil.ignore_patterns("provenance.json", "adapter"))
    assert gen.perplexity(test) < load_generator(bare).perplexity(test)


def test_lm_footprint_quantizes_every_linear_and_halves_the_rest(lm):
    out = lm["out"]
    dtypes = tensor_dtypes(out)
    quantized = {n for n, d in dtypes.items() if n.endswith("proj.weight")}
    assert quantized and all(dtypes[n] == "U8" for n in quantized)
    # nothing but the 4-bit weights' own small quantization state ("<name>.weight.absmax"...) left in fp32
    assert {d for n, d in dtypes.items() if ".weight." not in n} == {"U8", "BF16"}
    ratio = (out / "model.safetensors").stat().st_size / (lm["project"] / "base" / "model.safetensors").stat().st_size
    # bf16 takes 0.5 of fp32 and NF4 about 0.14 (4 bits plus double-quantized block scales)
    assert ratio < 0.45, ratio


def test_lm_merged_root_still_builds(lm, tmp_path):
    out = tmp_path / "m"
    extra = build(lm["project"], "lm-qlora", "qlora-4bit", {**LM_RECIPE, "root": "merged"},
                  lm["project"] / "base", out, "base")
    assert extra["root"] == "merged" and extra["storage_dtype"] == "bf16"
    assert json.loads((out / "config.json").read_text())["quantization_config"]["load_in_4bit"]


def test_unsloth_is_refused_in_one_line_without_cuda():
    from zoo.families.text_generation.qlora import qlora_backend

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the unsloth path is the gpu-marked test's")
    assert qlora_backend("auto") == "peft"
    with pytest.raises(ZooError, match="unsloth needs CUDA") as e:
        qlora_backend("unsloth")
    assert "\n" not in str(e.value)


# --- the text classifier -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(tmp_path_factory, _tiny_zoo_template) -> Path:
    """The tiny project's qlora-4bit, on a 64-wide tiny BERT (bitsandbytes' CPU kernel needs 64-multiples)."""
    from test_techniques_adv import QLORA_RECIPE, _build

    root = tmp_path_factory.mktemp("qlora-cls") / "project"
    shutil.copytree(_tiny_zoo_template, root)
    shutil.rmtree(root / "assets" / "tiny-bert")
    make_tiny_bert(root / "assets" / "tiny-bert", hidden=64)
    (root / "recipes" / "qlora.yaml").write_text(QLORA_RECIPE)
    return _build(root / "registry.yaml", "qlora-4bit")["qlora-4bit"]


def test_classifier_root_is_4bit_with_16bit_rest(classifier):
    import bitsandbytes as bnb
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(classifier)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    dtypes = tensor_dtypes(classifier)
    assert {d for n, d in dtypes.items() if ".weight." not in n} == {"U8", "BF16"}
    linear = [n for n in dtypes if n.endswith(("query.weight", "key.weight", "value.weight", "dense.weight"))
              and not n.startswith("classifier")]
    assert linear and all(dtypes[n] == "U8" for n in linear)
    prov = json.loads((classifier / "provenance.json").read_text())
    assert prov["storage_dtype"] == "bf16" and prov["merge_check"]["agreement"] >= 0.9


def test_classifier_peft_adapter_on_the_nf4_upstream_base(classifier):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from zoo.techniques import qlora

    prov = json.loads((classifier / "provenance.json").read_text())
    labels = prov["label_names"]
    base_dir = classifier.parents[2] / "assets" / "tiny-bert"
    base = AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)}, device_map={"": "cpu"},
        quantization_config=qlora.quantization_config(qlora.QloraParams()), dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, classifier / "adapter").eval()
    tok = AutoTokenizer.from_pretrained(classifier)
    merged = AutoModelForSequenceClassification.from_pretrained(classifier)
    from test_techniques_adv import PROBES

    agree = (qlora.logits(tuned, tok, PROBES, 16).argmax(-1) == qlora.logits(merged, tok, PROBES, 16).argmax(-1))
    assert agree.float().mean() >= 0.9
