"""w16a16: the parent's weights and activations in fp16 or bf16, as safetensors and an fp16 ONNX graph."""

from __future__ import annotations

from typing import Any, Literal

from zoo.registry.schema import Kind, Task
from zoo.techniques.base import BuildContext, Params, Technique


class HalfParams(Params):
    dtype: Literal["fp16", "bf16"] = "fp16"
    onnx: bool = True  # also write onnx/model.onnx in fp16 (bf16 has no ONNX Runtime CPU kernels)


class Half(Technique):
    name = "half"
    kinds = frozenset({Kind.w16a16})
    tasks = frozenset({Task.text_classification})
    params = HalfParams

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        raise NotImplementedError
