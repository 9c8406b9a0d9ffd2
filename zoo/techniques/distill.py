"""distilled: a smaller student, initialised from the teacher's layers, trained on softened teacher logits + labels."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from zoo.registry.schema import Kind, Task
from zoo.techniques.base import BuildContext, Params, Technique


class DistillParams(Params):
    student_layers: int = Field(3, ge=1, le=128)  # layers kept, spread evenly over the teacher's
    temperature: float = Field(2.0, gt=0, le=100)
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the KL term; 1 - alpha on cross-entropy
    epochs: float = Field(2, gt=0, le=100)
    lr: float = Field(1e-4, gt=0, le=1)
    batch_size: int = Field(16, ge=1, le=4096)
    max_length: int = Field(128, ge=8, le=8192)


class Distill(Technique):
    name = "distill-kd"
    kinds = frozenset({Kind.distilled})
    tasks = frozenset({Task.text_classification})
    params = DistillParams

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        raise NotImplementedError
