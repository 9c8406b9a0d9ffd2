"""The causal-LM family on a tiny Llama: text splits, each technique's build, loading, metrics and GGUF conversion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tiny_families import WORDS, make_text, make_tiny_llama


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm-project")
    make_tiny_llama(root / "base")
    make_text(root / "play.txt")
    return root


def model_entry():
    from zoo.registry.schema import Model

    return Model.model_validate({
        "task": "text-generation", "license": "apache-2.0", "base": {"source": "file:base"},
        "dataset": {"source": "file:play.txt", "label": None, "split": {"train": 40, "test": 12, "calibration": 4}},
        "evaluation": {"metrics": ["perplexity", "exact_match"]},
        "variants": {"fp32": {"kind": "fp32", "recipe": "lm-finetune", "target": "cpu"}},
    })


def build(project: Path, technique_name: str, kind: str, params: dict, parent: Path, out: Path,
          parent_kind: str = "fp32") -> dict:
    """Build one variant through the technique's build(), as zoo.build does, and return its provenance extras."""
    from zoo.registry.schema import Target, Variant
    from zoo.techniques import TECHNIQUES, BuildContext

    technique = TECHNIQUES.get(technique_name)
    out.mkdir(parents=True)

    def no_splits():
        raise AssertionError("causal-LM techniques read their texts through zoo.families.text_generation.data")

    ctx = BuildContext(
        model_id="tiny-lm", variant_id=kind, model=model_entry(),
        variant=Variant.model_validate({"kind": kind, "from": "fp32", "recipe": "r", "target": "cpu"}),
        target=Target(device="cpu"), recipe_name="r", params=technique.params.model_validate(params),
        parent_dir=parent, parent_kind=parent_kind, out_dir=out, splits=no_splits, progress=None,
        log=lambda *_: None, root=project,
    )
    extra = technique.build(ctx)
    assert extra["format"] in technique.formats
    return extra


def splits(project: Path):
    from zoo.families.text_generation import data

    return data.load_splits(model_entry().dataset, project)


@pytest.fixture(scope="module")
def finetuned(project, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ft") / "fp32"
    build(project, "lm-finetune", "fp32", {"method": "full", "steps": 40, "lr": 1e-2, "batch_size": 8,
                                           "max_length": 32}, project / "base", out, parent_kind="base")
    return out


# --- data and metrics ---------------------------------------------------------------------------------------------

def test_chunks_keep_whole_lines_and_respect_the_limit():
    from zoo.families.text_generation.data import chunks

    text = "\n".join(f"line number {i} of the play, spoken slowly" for i in range(40)) + "\n\nshort\n"
    got = chunks(text, max_chars=200)
    assert all(len(c) <= 200 for c in got)
    assert "\n".join(got).splitlines() == [ln for ln in text.splitlines()[:40]]  # "short" is under the minimum
    assert chunks("a" * 300, max_chars=100) == ["a" * 300]


def test_splits_are_deterministic_disjoint_and_checked(project):
    from zoo.errors import ZooError
    from zoo.families.text_generation import data

    s = splits(project)
    assert (len(s.train), len(s.test), len(s.calibration)) == (40, 12, 4)
    assert not set(s.indices["train"]) & set(s.indices["test"])
    assert s.calibration == s.train[:4]
    data._CACHE.clear()
    assert splits(project).indices == s.indices
    big = model_entry().dataset.model_copy(update={"split": model_entry().dataset.split.model_copy(
        update={"train": 500})})
    with pytest.raises(ZooError, match="lower them"):
        data.load_splits(big, project)


def test_next_word_examples_and_exact_match():
    from zoo.families.text_generation import metrics

    ex = metrics.next_word_examples(["good night sweet prince", "o what", "my lord the\nKing is dead!"])
    assert ex == [("good night", "sweet"), ("my lord the\n", "king")]
    assert metrics.exact_match(lambda p: " sweet, and" if p.endswith("night") else "Queen", ex) == 0.5
    assert metrics.next_word_examples(["a b c d", "e f g h"], limit=1) == [("a b", "c")]


# --- techniques ---------------------------------------------------------------------------------------------------

def test_finetune_lowers_perplexity_and_generates(project, finetuned):
    from zoo.families.text_generation import load_generator

    test = splits(project).test
    base = load_generator(project / "base").perplexity(test)
    gen = load_generator(finetuned)
    tuned = gen.perplexity(test)
    assert math.isfinite(base) and math.isfinite(tuned)
    assert tuned < base / 3, (base, tuned)
    assert gen.task_metric(test)["exact_match"] > 0.3
    text = gen.generate("good night sweet", max_new_tokens=3)
    assert text.split()[0] in WORDS
    assert "".join(gen.generate("good night sweet", max_new_tokens=3, stream=True)).strip() == text.strip()
    prov = json.loads((finetuned / "config.json").read_text())
    assert prov["num_hidden_layers"] == 4


def test_lora_finetune_merges_into_plain_weights(project, tmp_path):
    from safetensors.torch import load_file

    from zoo.families.text_generation import load_generator

    extra = build(project, "lm-finetune", "fp32", {"method": "lora", "steps": 20, "lr": 2e-2, "r": 4, "alpha": 8,
                                                   "max_length": 32}, project / "base", tmp_path / "v", "base")
    assert extra["lora"]["merged"] and extra["training"]["steps"] == 20
    assert not [k for k in load_file(tmp_path / "v" / "model.safetensors") if "lora" in k]
    test = splits(project).test
    assert load_generator(tmp_path / "v").perplexity(test) < load_generator(project / "base").perplexity(test)


def test_half_writes_bf16(project, finetuned, tmp_path):
    from zoo.families.text_generation import load_generator

    extra = build(project, "lm-half", "w16a16", {"dtype": "bf16"}, finetuned, tmp_path / "v")
    gen = load_generator(tmp_path / "v")
    assert gen.dtype == "bf16" and extra["dtype"] == "bf16"
    assert extra["check"]["perplexity"] == pytest.approx(extra["check"]["parent_perplexity"], rel=0.1)
    assert gen.generate("good night sweet", max_new_tokens=2)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_genai_build_loads_with_og_and_generates_like_its_parent(project, finetuned, tmp_path, kind):
    import onnxruntime_genai as og

    from zoo.families.text_generation import load_generator

    extra = build(project, "lm-genai", kind, {}, finetuned, tmp_path / "v")
    assert extra["format"] == "onnx-genai" and extra["quantization"]["weights"] == kind
    assert (tmp_path / "v" / "genai_config.json").is_file()
    og.Model(str(tmp_path / "v"))  # what the card's snippet and the Space load
    gen = load_generator(tmp_path / "v")
    assert gen.runtime == "onnxruntime-genai" and gen.dtype == kind
    assert extra["check"]["perplexity"] == pytest.approx(extra["check"]["parent_perplexity"], rel=0.25)
    # og.Generator's greedy tokens follow the parent's (transformers) greedy tokens on this tiny model
    parent = load_generator(finetuned)
    assert gen.generate("good night sweet", max_new_tokens=4, chat=False) == parent.generate(
        "good night sweet", max_new_tokens=4, chat=False)
    streamed = "".join(gen.generate("good night sweet", max_new_tokens=4, stream=True, chat=False))
    assert streamed.strip() == gen.generate("good night sweet", max_new_tokens=4, chat=False).strip()


def test_genai_full_sequence_logits_match_pytorch_on_fp32(project, finetuned, tmp_path):
    """The perplexity path (plain ONNX Runtime on the builder's graph, empty KV cache) against PyTorch, batched."""
    import numpy as np

    from zoo.families.text_generation import genai, load_generator

    genai.build(finetuned, tmp_path / "v", "fp32", {}, tmp_path / "cache")
    ids = load_generator(finetuned).tokenizer(["good night sweet prince and", "to be or not to"],
                                              return_tensors="pt")["input_ids"]
    ref = load_generator(finetuned).logits(ids)
    got = genai.GenaiModel(tmp_path / "v").logits(ids.numpy())
    assert np.abs(got - ref.numpy()).max() < 1e-4


def test_genai_keep_fp32_keeps_the_named_projections_dense(project, finetuned, tmp_path):
    import onnx

    extra = build(project, "lm-genai", "int4", {"keep_fp32": ["*/mlp/down_proj/MatMul"]}, finetuned, tmp_path / "v")
    assert extra["quantization"]["kept_fp32"]["nodes"] == 4  # one down_proj per layer
    graph = onnx.load(str(tmp_path / "v" / "model.onnx"), load_external_data=False).graph
    dense = [n.name for n in graph.node if n.op_type == "MatMul" and "down_proj" in n.name]
    assert len(dense) == 4 and not [n for n in graph.node if n.op_type == "MatMulNBits" and "down_proj" in n.name]


def test_genai_int4_holds_the_named_groups_at_int8_with_k_quant(project, finetuned, tmp_path):
    import onnx

    from zoo.families.text_generation import genai

    extra = build(project, "lm-genai", "int4", {"algo": "k_quant", "int8_groups": ["last_matmul"]}, finetuned,
                  tmp_path / "v")
    assert (extra["quantization"]["algo"], extra["quantization"]["int8_groups"]) == ("k_quant", ["last_matmul"])
    graph = onnx.load(str(tmp_path / "v" / "model.onnx"), load_external_data=False).graph
    bits = {n.name: next(a.i for a in n.attribute if a.name == "bits") for n in graph.node
            if n.op_type == "MatMulNBits"}
    head = [b for name, b in bits.items() if "lm_head" in name]
    assert head == [8] and sorted(set(b for name, b in bits.items() if "lm_head" not in name)) == [4]
    assert genai.weight_bits(tmp_path / "v") == "int4"


def test_genai_rejects_keep_fp32_patterns_that_match_nothing(project, finetuned, tmp_path):
    from zoo.errors import ZooError

    with pytest.raises(ZooError, match="keep_fp32"):
        build(project, "lm-genai", "int8", {"keep_fp32": ["no_such_proj"]}, finetuned, tmp_path / "v")


def test_spread_keeps_first_and_last_layers():
    from zoo.errors import ZooError
    from zoo.families.text_generation.techniques import spread

    assert spread(30, 10) == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    assert spread(4, 2) == [0, 3]
    with pytest.raises(ZooError, match="between 1 and 3"):
        spread(4, 4)


def test_distilled_student_starts_from_the_chosen_teacher_layers(project, finetuned, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    extra = build(project, "lm-distill", "distilled", {"student_layers": 2, "steps": 0}, finetuned, tmp_path / "v")
    assert extra["student"] == {"layers": 2, "initialised_from_teacher_layers": [0, 3]}
    teacher = AutoModelForCausalLM.from_pretrained(finetuned)
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "v")
    assert student.config.num_hidden_layers == 2
    for s_layer, t_index in zip(student.model.layers, [0, 3], strict=True):
        t_layer = teacher.model.layers[t_index]
        for (name, sp), (_, tp) in zip(s_layer.named_parameters(), t_layer.named_parameters(), strict=True):
            assert torch.equal(sp, tp), name
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)


def test_distillation_trains_toward_the_teacher(project, finetuned, tmp_path):
    from zoo.families.text_generation import load_generator

    params = {"layers": [1, 2], "steps": 30, "lr": 1e-2, "temperature": 2.0, "alpha": 0.5, "max_length": 32}
    extra = build(project, "lm-distill", "distilled", params, finetuned, tmp_path / "v")
    assert extra["student"]["initialised_from_teacher_layers"] == [1, 2]
    assert extra["training"]["steps"] == 30 and math.isfinite(extra["training"]["final_loss"])
    test = splits(project).test
    untrained = tmp_path / "u"
    build(project, "lm-distill", "distilled", {**params, "steps": 0}, finetuned, untrained)
    assert load_generator(tmp_path / "v").perplexity(test) < load_generator(untrained).perplexity(test)


def test_file_dataset_is_read_relative_to_the_registry_root(project, tmp_path):
    from zoo.errors import ZooError
    from zoo.families.text_generation.techniques import text_splits
    from zoo.registry.schema import Target, Variant
    from zoo.techniques import BuildContext

    def ctx(root):
        return BuildContext("tiny-lm", "fp32", model_entry(), Variant(kind="fp32", recipe="r", target="cpu"),
                            Target(device="cpu"), "r", None, project / "base", "base", tmp_path, lambda: None, None,
                            root=root)

    assert len(text_splits(ctx(project)).train) > 0
    with pytest.raises(ZooError, match="not found"):
        text_splits(ctx(tmp_path / "elsewhere"))


def test_lm_recipes_validate():
    from zoo.registry.recipes import load_recipe

    recipes = Path(__file__).resolve().parent.parent / "recipes"
    names = sorted(p.stem for p in recipes.glob("lm-*.yaml"))
    assert len(names) >= 5
    for name in names:
        recipe, problems = load_recipe(name, recipes, "recipes")
        assert recipe is not None and not problems, (name, problems)
        assert recipe.technique.name.startswith("lm-")


# --- GGUF ---------------------------------------------------------------------------------------------------------

def test_rebuild_gives_a_savable_copy_with_equal_weights(project, tmp_path):
    import torch

    from zoo.families.text_generation import gguf
    from zoo.families.text_generation.techniques import load_fp32

    loaded = load_fp32(project / "base")
    fresh = gguf.rebuild(loaded)
    fresh.save_pretrained(tmp_path / "out")
    again = load_fp32(tmp_path / "out")
    for (name, a), (_, b) in zip(loaded.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def _permute(w, n_head: int):
    """llama.cpp's q/k row order (convert_hf_to_gguf.py), which the GGUF loader undoes."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, model) -> Path:
    """Write ``model`` (a tiny LlamaForCausalLM) as an f32 GGUF with a byte-level BPE tokenizer, like llama.cpp."""
    import gguf

    c = model.config
    letters = list("abcdefghijklmnopqrstuvwxyz")
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "Ġ", *letters, *("Ġ" + x for x in letters), "th", "Ġth"]
    tokens += [f"<extra_{i}>" for i in range(c.vocab_size - len(tokens))]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])  # transformers 5 keeps it in rope_parameters
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(["t h", "Ġ th"])
    w.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for i in range(c.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg in ("attn_q", "attn_k"):
                t = _permute(t, c.num_attention_heads if gg == "attn_q" else c.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_converts_once_to_an_equal_savable_checkpoint(tmp_path, monkeypatch):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from zoo.families.text_generation import gguf, load_generator

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      tie_word_embeddings=True)
    original = LlamaForCausalLM(cfg).eval()
    path = write_tiny_gguf(tmp_path / "tiny.gguf", original)
    out = gguf.converted(path, cache=tmp_path / "cache", log=lambda *_: None)
    assert out.parent.name == "converted" and out.name == gguf.sha256_file(path)
    again = LlamaForCausalLM.from_pretrained(out)
    for name, value in original.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    tok = AutoTokenizer.from_pretrained(out)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert tok.decode(tok("the cat")["input_ids"]) == "the cat"  # no BOS added, as the GGUF says
    assert load_generator(out).perplexity(["the cat sat on the mat"]) > 1

    def fail(*_):
        raise AssertionError("converted twice")

    monkeypatch.setattr(gguf, "convert", fail)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    assert gguf.model_dir(path, log=lambda *_: None) == out  # cached: no second conversion


def test_model_dir_rejects_other_paths(tmp_path):
    from zoo.errors import ZooError
    from zoo.families.text_generation import gguf

    (tmp_path / "x.bin").write_bytes(b"0")
    with pytest.raises(ZooError, match="neither a transformers folder"):
        gguf.model_dir(tmp_path / "x.bin")
