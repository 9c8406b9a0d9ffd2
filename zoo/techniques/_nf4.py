"""What both qlora-4bit techniques do to a bitsandbytes 4-bit model before saving it."""

from __future__ import annotations

from typing import Any

ADAPTER_DIR = "adapter"  # the LoRA adapter's folder inside a qlora-4bit artifact (and its card's repo)
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def cast_unquantized(model: Any, dtype: str) -> int:
    """Store every floating-point weight bitsandbytes left unquantized (embeddings, norms, heads, biases) in
    ``dtype`` and name it in the config, so ``from_pretrained`` loads them so; returns how many were cast.

    The model must have been quantized from full-precision weights: asking from_pretrained for a 16-bit dtype instead
    rounds the weights to 16 bits before NF4 quantizes them, which gives other 4-bit codes than training saw.
    """
    import torch

    target = getattr(torch, TORCH_DTYPES[dtype])
    cast = 0
    for param in {id(p): p for p in model.parameters()}.values():  # a tied embedding and head are one parameter
        if getattr(param, "quant_state", None) is None and param.is_floating_point() and param.dtype != target:
            param.data = param.data.to(target)
            cast += 1
    model.config.dtype = target
    return cast
