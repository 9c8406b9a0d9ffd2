"""int8: ONNX export with optimum-onnx, then ONNX Runtime quantization (static QDQ with calibration, or dynamic)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from zoo.registry.schema import Kind, Task
from zoo.techniques.base import BuildContext, Params, Technique


class Calibration(Params):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    samples: int = Field(128, ge=1, le=100_000)  # rows from the train split
    percentile: float = Field(99.999, gt=90, le=100)


class Int8Params(Params):
    mode: Literal["static", "dynamic"] = "static"
    per_channel: bool = True
    activations: Literal["int8", "uint8", "int16", "uint16"] = "uint8"  # static only; int16 = w8a16
    weights: Literal["int8", "uint8"] = "int8"
    isa: Literal["auto", "avx2", "avx512", "avx512-vnni", "arm64"] = "auto"  # auto: the target's isa
    calibration: Calibration = Calibration()
    max_length: int = Field(128, ge=8, le=8192)


class Int8(Technique):
    name = "onnx-int8"
    kinds = frozenset({Kind.int8})
    tasks = frozenset({Task.text_classification})
    params = Int8Params
    formats = ("onnx",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        raise NotImplementedError
