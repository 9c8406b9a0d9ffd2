"""qlora-4bit: a bitsandbytes NF4 base plus a LoRA adapter trained with peft; the adapter and a merged 4-bit model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from zoo.registry.schema import Kind, Task
from zoo.techniques.base import BuildContext, Params, Technique


class QloraParams(Params):
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1, le=4096)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    epochs: float = Field(1, gt=0, le=100)
    lr: float = Field(2e-4, gt=0, le=1)
    batch_size: int = Field(16, ge=1, le=4096)
    max_length: int = Field(128, ge=8, le=8192)
    double_quant: bool = True
    compute_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    backend: Literal["auto", "peft", "unsloth"] = "auto"  # auto: unsloth when CUDA and unsloth are present


class Qlora(Technique):
    name = "qlora-nf4"
    kinds = frozenset({Kind.qlora_4bit})
    tasks = frozenset({Task.text_classification})
    params = QloraParams
    formats = ("bnb-4bit",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        raise NotImplementedError
