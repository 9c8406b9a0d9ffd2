"""Techniques for text generation (causal LMs): fine-tune, bf16, int8/int4 ONNX and a distilled student.

QLoRA-4bit lives in :mod:`.qlora`, so its changes do not rebuild the other LM variants.

Every technique reads its parent through :func:`.gguf.model_dir` (so a ``.gguf`` base is converted once and
cached), trains on the chunks of :mod:`.data`, and writes a folder that :func:`.load_generator` loads:
format ``transformers-causal-lm`` (fp32, bf16, bitsandbytes 4-bit + ``adapter/``) or ``onnx-genai`` (int8, int4).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from zoo.errors import ZooError
from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique

TEXT_GENERATION = frozenset({"text-generation"})
CHECK_TEXTS = 4  # held-out texts on which a converted model is compared with its parent


class TrainParams(Params):
    """Training settings shared by the causal-LM techniques; ``steps`` counts optimizer steps."""

    steps: int = Field(20, ge=0, le=100_000)
    lr: float = Field(2e-4, gt=0, le=1)
    batch_size: int = Field(8, ge=1, le=4096)
    max_length: int = Field(128, ge=8, le=8192)  # tokens per training text (longer chunks are truncated)
    weight_decay: float = Field(0.0, ge=0, le=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)


class LoraParams(TrainParams):
    r: int = Field(8, ge=1, le=1024)
    alpha: int = Field(16, ge=1, le=4096)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class FinetuneParams(LoraParams):
    method: Literal["none", "full", "lora"] = "lora"  # none: the parent as is; lora: train LoRA, then merge it
    lr: float = Field(1e-4, gt=0, le=1)


class HalfParams(Params):
    dtype: Literal["bf16", "fp16"] = "bf16"


class GenaiParams(Params):
    """onnxruntime-genai model builder settings; the precision (int8 or int4) is the variant's kind."""

    block_size: Literal[16, 32, 64, 128, 256] = 32  # weights per quantization scale (MatMulNBits block)
    # the MatMulNBits compute type: 4 = int8 activations (the CPU fast path), 1 = fp32 activations (closest to fp32)
    accuracy_level: Literal[1, 2, 3, 4] = 4
    symmetric: bool = True  # int4/int8 around zero; false: uint4/uint8 with zero points
    # builder node names (fnmatch globs, e.g. "*/mlp/down_proj/MatMul") whose weights stay fp32
    keep_fp32: list[str] = []
    # the builder's weight-rounding method: round-to-nearest ("default", "rtn") or llama.cpp's k-quant ("k_quant")
    algo: Literal["default", "rtn", "k_quant"] = "default"
    # MatMul groups held at int8 inside an int4 model (the builder's matmul_mixed_precision selectors):
    # "last_matmul" (the LM head, tied to the embeddings in SmolLM2) and "mixed_layers" (llama.cpp's mixed strategy)
    int8_groups: list[Literal["last_matmul", "mixed_layers"]] = []


class DistillParams(TrainParams):
    student_layers: int = Field(6, ge=1, le=256)  # decoder layers kept, spread evenly over the teacher's
    layers: list[int] | None = None  # the teacher layers to keep, explicitly (overrides the even spread)
    temperature: float = Field(2.0, gt=0, le=100)
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the KL term; 1 - alpha on next-token cross-entropy
    lr: float = Field(1e-4, gt=0, le=1)


# --- shared steps -------------------------------------------------------------------------------------------------

def source_dir(ctx: BuildContext) -> Path:
    """The parent as a transformers folder (a ``.gguf`` base is converted once, cached)."""
    from zoo.families.text_generation import gguf

    return gguf.model_dir(ctx.parent_dir, log=ctx.log)


def text_splits(ctx: BuildContext) -> Any:
    """The model's texts split by its seed (:class:`zoo.families.text_generation.data.TextSplits`)."""
    from zoo.families.text_generation import data

    return data.load_splits(ctx.model.dataset, ctx.root, f"models.{ctx.model_id}.dataset")


def load_tokenizer(path: Path) -> Any:
    """The tokenizer, with a pad token (the eos token when it has none) and right padding for training."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def load_fp32(path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def lm_batches(tokenizer: Any, texts: list[str], p: TrainParams) -> Any:
    from zoo.techniques._train import tokenize_batches

    return tokenize_batches(tokenizer, texts, None, p.batch_size, p.max_length, shuffle=True, seed=p.seed)


def lm_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Next-token cross-entropy, padding excluded."""
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss


def train(ctx: BuildContext, model: Any, tokenizer: Any, texts: list[str], p: TrainParams, desc: str,
          loss_fn: Any = lm_loss) -> dict[str, Any]:
    """Run ``p.steps`` optimizer steps of :func:`zoo.techniques._train.train_loop` over ``texts``."""
    from zoo.techniques._train import train_loop

    batches = lm_batches(tokenizer, texts, p)
    facts = train_loop(model, batches, epochs=p.steps / len(batches), lr=p.lr, weight_decay=p.weight_decay,
                       warmup_ratio=p.warmup_ratio, progress=ctx.progress, desc=desc, loss_fn=loss_fn)
    return {**facts, "batch_size": p.batch_size, "max_length": p.max_length, "lr": p.lr}


def lora_config(p: LoraParams) -> Any:
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout,
                      target_modules=p.target_modules)


def params_count(model: Any) -> int:
    """Parameters (elements) of a torch model, counting a bitsandbytes 4-bit weight by its unpacked shape."""
    total = 0
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        total += state.shape.numel() if state is not None else p.numel()
    return total


def parent_max_length(path: Path, default: int) -> int:
    prov = path / "provenance.json"
    if prov.is_file() and isinstance(value := json.loads(prov.read_text()).get("max_length"), int):
        return value
    return default


def base_facts(ctx: BuildContext, src: Path) -> dict[str, Any]:
    """Where a ``from: base`` build's weights came from (the GGUF conversion record), else nothing."""
    marker = src / "gguf.json"
    return {"converted_from": json.loads(marker.read_text())} if ctx.parent_kind == "base" and marker.is_file() else {}


def check(ctx: BuildContext, parent: Path, texts: list[str], max_length: int) -> dict[str, Any]:
    """Perplexity of the new artifact and its parent on a few held-out texts (both must be finite)."""
    from zoo.families.text_generation import load_generator

    texts = texts[:CHECK_TEXTS]
    got = load_generator(ctx.out_dir).perplexity(texts, max_length)
    ref = load_generator(parent).perplexity(texts, max_length)
    return {"texts": len(texts), "perplexity": round(got, 3), "parent_perplexity": round(ref, 3)}


# --- techniques ---------------------------------------------------------------------------------------------------

class LmFinetune(Technique):
    """fp32: the parent in fp32, optionally fine-tuned on the domain text (full, or LoRA merged into the weights)."""

    name = "lm-finetune"
    kinds = frozenset({Kind.fp32})
    tasks = TEXT_GENERATION
    params = FinetuneParams
    formats = ("transformers-causal-lm",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from zoo.techniques._train import seed_everything, set_threads

        p: FinetuneParams = ctx.params  # type: ignore[assignment]
        set_threads()
        seed_everything(p.seed)
        src = source_dir(ctx)
        tokenizer = load_tokenizer(src)
        model = load_fp32(src)
        splits = text_splits(ctx)
        extra: dict[str, Any] = {"method": p.method}
        if p.method == "full" and p.steps:
            extra["training"] = train(ctx, model, tokenizer, splits.train, p, f"{ctx.variant_id}: full fine-tune")
        elif p.method == "lora" and p.steps:
            from peft import get_peft_model

            peft_model = get_peft_model(model, lora_config(p))
            extra["training"] = train(ctx, peft_model, tokenizer, splits.train, p, f"{ctx.variant_id}: LoRA")
            extra["lora"] = {"r": p.r, "alpha": p.alpha, "target_modules": p.target_modules, "merged": True}
            model = peft_model.merge_and_unload()
        if "training" in extra:
            extra["training"]["data"] = splits.describe("train")
        model.save_pretrained(ctx.out_dir, safe_serialization=True)
        tokenizer.save_pretrained(ctx.out_dir)
        return {"format": "transformers-causal-lm", "dtype": "fp32", "label_names": None,
                "max_length": p.max_length, "params_count": params_count(model), **base_facts(ctx, src), **extra}


class LmHalf(Technique):
    """w16a16: the parent's weights and activations in bf16 (or fp16), as safetensors."""

    name = "lm-half"
    kinds = frozenset({Kind.w16a16})
    tasks = TEXT_GENERATION
    params = HalfParams
    formats = ("transformers-causal-lm",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch

        from zoo.techniques._train import set_threads

        p: HalfParams = ctx.params  # type: ignore[assignment]
        set_threads()
        src = source_dir(ctx)
        model = load_fp32(src).to({"bf16": torch.bfloat16, "fp16": torch.float16}[p.dtype])
        model.save_pretrained(ctx.out_dir, safe_serialization=True)
        load_tokenizer(src).save_pretrained(ctx.out_dir)
        max_length = parent_max_length(src, 256)
        return {"format": "transformers-causal-lm", "dtype": p.dtype, "label_names": None, "max_length": max_length,
                "params_count": params_count(model), **base_facts(ctx, src),
                "check": check(ctx, src, text_splits(ctx).test, max_length)}


def builder_options(p: GenaiParams) -> dict[str, Any]:
    """The model builder's ``--extra_options`` for a recipe (``keep_fp32`` aside: it needs a first build's names)."""
    return {"block_size": p.block_size, "accuracy_level": p.accuracy_level, "is_symmetric": str(p.symmetric).lower(),
            "algo_config": None if p.algo == "default" else p.algo,
            "matmul_mixed_precision": ",".join(f"{g}:int8" for g in p.int8_groups) or None}


class LmGenai(Technique):
    """int8 / int4: onnxruntime-genai's model builder (weight-only MatMulNBits, KV cache), run by og.Generator."""

    name = "lm-genai"
    kinds = frozenset({Kind.int8, Kind.int4})
    tasks = TEXT_GENERATION
    params = GenaiParams
    formats = ("onnx-genai",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from zoo.families.text_generation import genai

        p: GenaiParams = ctx.params  # type: ignore[assignment]
        precision = str(ctx.variant.kind)
        src = source_dir(ctx)
        key = f"{ctx.model_id}:{ctx.variant_id}"
        options = builder_options(p)
        kept: list[str] = []
        with tempfile.TemporaryDirectory(prefix="zoo-genai-") as tmp:
            ctx.log(f"{key}: building {precision} ONNX with onnxruntime-genai's model builder")
            if p.keep_fp32:  # node names exist only once built: a first pass names them, the second keeps them
                probe = Path(tmp) / "names"
                genai.build(src, probe, precision, options, Path(tmp) / "cache")
                kept = genai.quantized_nodes(probe, p.keep_fp32, f"recipes/{ctx.recipe_name}.yaml: keep_fp32")
                shutil.rmtree(probe)
                options["nodes_to_exclude"] = ",".join(kept)
            genai.build(src, ctx.out_dir, precision, options, Path(tmp) / "cache")
        max_length = parent_max_length(src, 256)
        return {"format": "onnx-genai", "dtype": precision, "label_names": None, "max_length": max_length,
                "params_count": _onnx_params(ctx.out_dir / "model.onnx"), **base_facts(ctx, src),
                "quantization": {"method": "onnxruntime-genai builder (MatMulNBits, weight-only)",
                                 "weights": precision, "block_size": p.block_size,
                                 "accuracy_level": p.accuracy_level, "symmetric": p.symmetric,
                                 "kept_fp32": {"patterns": p.keep_fp32, "nodes": len(kept)},
                                 "algo": p.algo, "int8_groups": p.int8_groups,
                                 "builder": f"onnxruntime-genai {_version('onnxruntime-genai')}"},
                "check": check(ctx, src, text_splits(ctx).test, max_length)}


def _version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


def _onnx_params(path: Path) -> int:
    """Weights of the graph: elements of its float initializers plus those packed in MatMulNBits (K × N each)."""
    import math

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    packed = {n.input[1] for n in graph.node if n.op_type == "MatMulNBits"}
    scales = {n.input[2] for n in graph.node if n.op_type == "MatMulNBits"} | {
        n.input[3] for n in graph.node if n.op_type == "MatMulNBits" and len(n.input) > 3}
    total = 0
    for node in graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            total += attrs["K"] * attrs["N"]
    return total + sum(math.prod(t.dims) for t in graph.initializer if t.name not in packed | scales)


class LmDistill(Technique):
    """distilled: a student with fewer decoder layers, copied from evenly spread teacher layers, then trained on the
    teacher's temperature-softened logits (KL) plus next-token cross-entropy."""

    name = "lm-distill"
    kinds = frozenset({Kind.distilled})
    tasks = TEXT_GENERATION
    params = DistillParams
    formats = ("transformers-causal-lm",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from zoo.techniques._train import seed_everything, set_threads

        p: DistillParams = ctx.params  # type: ignore[assignment]
        set_threads()
        seed_everything(p.seed)
        src = source_dir(ctx)
        tokenizer = load_tokenizer(src)
        teacher = load_fp32(src)
        for param in teacher.parameters():
            param.requires_grad_(False)
        layers = p.layers or spread(teacher.config.num_hidden_layers, p.student_layers)
        student = make_student(teacher, layers, f"models.{ctx.model_id}.variants.{ctx.variant_id}")
        splits = text_splits(ctx)
        training = {}
        if p.steps:
            training = train(ctx, student, tokenizer, splits.train, p, f"{ctx.variant_id}: distill",
                             loss_fn=kd_loss(teacher, p.temperature, p.alpha))
            training["data"] = splits.describe("train")
        student.save_pretrained(ctx.out_dir, safe_serialization=True)
        tokenizer.save_pretrained(ctx.out_dir)
        return {"format": "transformers-causal-lm", "dtype": "fp32", "label_names": None, "max_length": p.max_length,
                "params_count": params_count(student),
                "teacher": {"variant": ctx.variant.from_, "layers": teacher.config.num_hidden_layers,
                            "params_count": params_count(teacher)},
                "student": {"layers": len(layers), "initialised_from_teacher_layers": layers},
                "distillation": {"temperature": p.temperature, "alpha": p.alpha}, "training": training}


def spread(teacher_layers: int, student_layers: int) -> list[int]:
    """``student_layers`` teacher layer indices spread evenly from the first to the last (both kept when k ≥ 2).

    Raises:
        ZooError: the student would not be smaller than the teacher.
    """
    if not 1 <= student_layers < teacher_layers:
        raise ZooError(f"recipe student_layers: {student_layers} must be between 1 and {teacher_layers - 1} "
                       f"(the teacher has {teacher_layers} layers)")
    if student_layers == 1:
        return [teacher_layers - 1]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [round(i * step) for i in range(student_layers)]


def make_student(teacher: Any, layers: list[int], field: str = "recipe") -> Any:
    """A copy of ``teacher`` keeping only the decoder ``layers`` (in order), with every other weight copied.

    Raises:
        ZooError: a layer index is out of range or repeated.
    """
    import copy

    n = teacher.config.num_hidden_layers
    if not layers or len(set(layers)) != len(layers) or any(not 0 <= i < n for i in layers):
        raise ZooError(f"{field}: layers {layers} must be distinct indices in 0..{n - 1}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in layers]
    student = type(teacher)(config)
    state = {}
    for key, value in teacher.state_dict().items():
        parts = key.split(".")
        if "layers" in parts and parts[parts.index("layers") + 1].isdigit():
            at = parts.index("layers") + 1
            old = int(parts[at])
            if old not in layers:
                continue
            parts[at] = str(layers.index(old))
        state[".".join(parts)] = value.clone()
    student.load_state_dict(state, strict=True)
    for i, layer in enumerate(student.model.layers):
        if hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = i  # the KV cache is indexed by the student's own layer numbers
    return student.eval()


def kd_loss(teacher: Any, temperature: float, alpha: float) -> Any:
    """``loss_fn(student, batch)``: alpha·T²·KL(teacher_T ‖ student_T) + (1 − alpha)·cross-entropy, over real tokens."""

    def loss_fn(student: Any, batch: dict[str, Any]) -> Any:
        import torch
        import torch.nn.functional as F

        mask = batch["attention_mask"].bool()
        out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        with torch.no_grad():
            t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        s = out.logits[:, :-1][mask[:, 1:]]
        t = t_logits[:, :-1][mask[:, 1:]]
        target = batch["input_ids"][:, 1:][mask[:, 1:]]
        kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True,
                      reduction="batchmean") * temperature**2
        return alpha * kl + (1 - alpha) * F.cross_entropy(s, target)

    return loss_fn
