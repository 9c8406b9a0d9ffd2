"""qlora-4bit for causal LMs: an NF4 (bitsandbytes) base plus a LoRA adapter trained on the domain text.

Published the way the Hub's ``bnb-4bit`` repos are: the root is a 4-bit checkpoint whose config.json carries its
``quantization_config`` (``from_pretrained(repo)`` gives the NF4 base), and ``adapter/`` holds the LoRA adapter
(``PeftModel.from_pretrained(base, repo, subfolder="adapter")`` gives the tuned model). ``root: merged`` instead
merges the adapter into the 4-bit weights, which re-quantizes them and rounds most of a small update away.

bitsandbytes quantizes only ``nn.Linear`` layers through transformers; the embeddings (tied to the LM head in small
Llamas) and the norms stay in ``storage_dtype``. bitsandbytes has 4-bit embedding modules, but transformers'
from_pretrained neither creates nor loads them, so a checkpoint with them would not load as a Hub user loads it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from zoo.errors import ZooError
from zoo.families.text_generation.techniques import (
    TEXT_GENERATION,
    LoraParams,
    base_facts,
    load_tokenizer,
    lora_config,
    params_count,
    source_dir,
    text_splits,
    train,
)
from zoo.nf4_guard import guard_cpu_kernel
from zoo.registry.schema import Kind
from zoo.techniques._nf4 import ADAPTER_DIR, TORCH_DTYPES, cast_unquantized
from zoo.techniques.base import BuildContext, Technique

UNQUANTIZED = ("transformers' bitsandbytes integration quantizes nn.Linear layers only; embeddings, the tied LM "
               "head and norms are kept in {dtype}")


class QloraParams(LoraParams):
    steps: int = Field(20, ge=1, le=100_000)
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1, le=4096)
    double_quant: bool = True
    compute_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    # the dtype of the weights NF4 does not cover (embeddings, tied head, norms) in the published root
    storage_dtype: Literal["fp32", "bf16", "fp16"] = "bf16"
    backend: Literal["auto", "peft", "unsloth"] = "auto"  # auto: unsloth when CUDA and unsloth are present
    # what the root folder holds: "base": the NF4 base the adapter was trained on, with adapter/ applied on load;
    # "merged": LoRA merged into the 4-bit weights (re-quantized, so a small update can round away)
    root: Literal["merged", "base"] = "base"


class LmQlora(Technique):
    """qlora-4bit: an NF4 (bitsandbytes) base plus a LoRA adapter trained on the domain text."""

    name = "lm-qlora"
    kinds = frozenset({Kind.qlora_4bit})
    tasks = TEXT_GENERATION
    params = QloraParams
    formats = ("transformers-causal-lm",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from zoo.techniques._train import seed_everything, set_threads

        p: QloraParams = ctx.params  # type: ignore[assignment]
        set_threads()
        seed_everything(p.seed)
        src = source_dir(ctx)
        tokenizer = load_tokenizer(src)
        splits = text_splits(ctx)
        backend = qlora_backend(p.backend)
        if backend == "unsloth":
            model = _unsloth_model(src, p)
        else:
            from peft import get_peft_model

            model = get_peft_model(load_nf4(src, p), lora_config(p))
        trainable = sum(x.numel() for x in model.parameters() if x.requires_grad)
        training = train(ctx, model, tokenizer, splits.train, p, f"{ctx.variant_id}: QLoRA ({backend})")
        training["data"] = splits.describe("train")
        model.save_pretrained(ctx.out_dir / ADAPTER_DIR, safe_serialization=True)
        tokenizer.save_pretrained(ctx.out_dir / ADAPTER_DIR)
        (ctx.out_dir / ADAPTER_DIR / "README.md").unlink(missing_ok=True)  # peft's stub; the card stage writes one
        root = model.merge_and_unload() if p.root == "merged" else model.unload()
        cast_unquantized(root, p.storage_dtype)
        root.save_pretrained(ctx.out_dir, safe_serialization=True)
        tokenizer.save_pretrained(ctx.out_dir)
        return {"format": "transformers-causal-lm", "dtype": "nf4", "label_names": None, "max_length": p.max_length,
                "params_count": params_count(root), **base_facts(ctx, src),
                "root": "merged" if p.root == "merged" else "nf4-base",
                "quantization": "bnb-nf4", "double_quant": p.double_quant, "compute_dtype": p.compute_dtype,
                "storage_dtype": p.storage_dtype, "unquantized": UNQUANTIZED.format(dtype=p.storage_dtype),
                "adapter": ADAPTER_DIR, "backend": backend, "trainable_params": trainable,
                "lora": {"r": p.r, "alpha": p.alpha, "dropout": p.dropout, "target_modules": p.target_modules},
                "training": training}


def qlora_backend(wanted: str) -> str:
    """``unsloth`` when asked for (or ``auto``) and CUDA and unsloth are both present, else ``peft``.

    Raises:
        ZooError: ``unsloth`` was asked for explicitly but CUDA or the package is missing.
    """
    import torch

    available = torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None
    if wanted == "unsloth" and not available:
        raise ZooError("recipe backend: unsloth needs CUDA and the unsloth package: install it on a GPU machine, "
                       "or set backend: auto")
    return "unsloth" if wanted in ("unsloth", "auto") and available else "peft"


def load_nf4(src: Path, p: QloraParams) -> Any:
    """The parent quantized to NF4 by bitsandbytes on load (frozen; LoRA is added on top)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=p.double_quant,
                             bnb_4bit_compute_dtype=getattr(torch, TORCH_DTYPES[p.compute_dtype]),
                             llm_int8_skip_modules=["lm_head"])  # the head (tied to the embeddings) stays unquantized
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(src, quantization_config=bnb, dtype=torch.float32,
                                                 device_map=device)
    for param in model.parameters():
        param.requires_grad_(False)
    guard_cpu_kernel(model)
    return model


def _unsloth_model(src: Path, p: QloraParams) -> Any:  # pragma: no cover - needs CUDA and unsloth
    from unsloth import FastLanguageModel

    model, _ = FastLanguageModel.from_pretrained(str(src), max_seq_length=p.max_length, load_in_4bit=True)
    modules = (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
               if p.target_modules == "all-linear" else p.target_modules)
    return FastLanguageModel.get_peft_model(model, r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout,
                                            target_modules=modules, random_state=p.seed)
