"""fp32: fine-tune the base model on the task (full, or LoRA then merged with peft)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from zoo.registry.schema import Kind, Task
from zoo.techniques.base import BuildContext, Params, Technique


class FinetuneParams(Params):
    method: Literal["full", "lora"] = "full"  # lora: train an adapter, then merge it into fp32 weights
    epochs: float = Field(2, gt=0, le=100)
    lr: float = Field(5e-5, gt=0, le=1)
    batch_size: int = Field(16, ge=1, le=4096)
    max_length: int = Field(128, ge=8, le=8192)
    weight_decay: float = Field(0.01, ge=0, le=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    lora_r: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1, le=4096)


class Finetune(Technique):
    name = "finetune"
    kinds = frozenset({Kind.fp32})
    tasks = frozenset({Task.text_classification})
    params = FinetuneParams

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        raise NotImplementedError
