"""The detection family's techniques: fp32 conversion of the frozen TF graph, w16a16, static int8 QDQ (PTQ).

Every artifact is an ``onnx-detector`` (:mod:`.model`): only the network (MobileNetV2 features + SSD box predictor,
``Preprocessor/sub`` → ``concat``/``concat_1``) is converted and quantized; the TF graph's preprocessing (resize,
scale), box decoding and NMS run in float outside it, which is what keeps the int8 boxes precise.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from zoo.errors import ZooError
from zoo.families.object_detection.model import FORMAT, write_config
from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique

TASKS = frozenset({"object-detection"})


class ConvertParams(Params):
    input: str = "Preprocessor/sub:0"  # the network's input: float NHWC in [-1, 1], after the graph's resize
    boxes: str = "concat:0"  # raw box encodings [N, A, 1, 4]
    logits: str = "concat_1:0"  # raw class logits [N, A, C] (C includes background at 0)
    anchors: str = "Concatenate/concat:0"  # [A, 4] ymin xmin ymax xmax, normalised
    input_size: int = Field(300, ge=32, le=1024)
    opset: int = Field(13, ge=11, le=21)
    score_threshold: float = Field(0.01, gt=0, lt=1)  # kept low for mAP; the Space shows boxes above 0.3
    iou_threshold: float = Field(0.6, gt=0, le=1)
    class_map: str = "coco91"  # model class index -> dataset id: COCO's 91 ids to coco128's 80


# COCO's 90 category ids (1-based, with gaps) in the order of the 80 contiguous YOLO ids
COCO91_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
              33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
              60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]


def coco91_map(n_logits: int) -> list[int]:
    table = [-1] * n_logits
    for yolo, coco in enumerate(COCO91_IDS):
        if coco < n_logits:
            table[coco] = yolo
    return table


class DetectionConvert(Technique):
    """fp32: the frozen TF graph's network converted once to ONNX with tf2onnx (the ``detection`` extra)."""

    name = "detection-convert"
    kinds = frozenset({Kind.fp32})
    tasks = TASKS
    params = ConvertParams
    formats = (FORMAT,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from zoo.families.object_detection.convert import converted

        p: ConvertParams = ctx.params  # type: ignore[assignment]
        folder = converted(ctx.parent_dir, p, log=ctx.log)
        for name in ("model.onnx", "anchors.npy"):
            shutil.copy2(folder / name, ctx.out_dir / name)
        n_logits = int(np.load(folder / "logits_dim.npy"))
        write_config(ctx.out_dir, input_size=p.input_size, dtype="fp32", score_threshold=p.score_threshold,
                     iou_threshold=p.iou_threshold, class_map=coco91_map(n_logits),
                     label_names=ctx.splits().label_names, quantized="none",
                     postprocess="box decoding + per-class NMS in float numpy, outside the ONNX graph")
        return {"format": FORMAT, "dtype": "fp32", "converter": "tf2onnx", "opset": p.opset}


class HalfParams(Params):
    keep_io_types: bool = True  # fp32 inputs/outputs around an fp16 graph


class DetectionHalf(Technique):
    name = "detection-fp16"
    kinds = frozenset({Kind.w16a16})
    tasks = TASKS
    params = HalfParams
    formats = (FORMAT,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        p: HalfParams = ctx.params  # type: ignore[assignment]
        model = convert_float_to_float16(onnx.load(str(ctx.parent_dir / "model.onnx")),
                                         keep_io_types=p.keep_io_types)
        onnx.save(model, str(ctx.out_dir / "model.onnx"))
        _copy_sidecars(ctx.parent_dir, ctx.out_dir, dtype="fp16", quantized="fp16 weights and activations")
        return {"format": FORMAT, "dtype": "fp16"}


class Calibration(Params):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    samples: int = Field(64, ge=1, le=100_000)  # train2017 images
    percentile: float = Field(99.999, gt=90, le=100)


class PtqParams(Params):
    per_channel: bool = True
    activations: Literal["uint8", "int8"] = "uint8"
    weights: Literal["int8", "uint8"] = "int8"
    isa: Literal["auto", "avx2", "avx512", "avx512-vnni", "arm64"] = "auto"  # auto: the target's isa
    calibration: Calibration = Calibration()
    exclude_nodes: list[str] = []  # node names or globs kept in fp32


class DetectionPtq(Technique):
    """int8: static QDQ of the network, per-channel weights, activations calibrated on train2017 images."""

    name = "detection-ptq"
    kinds = frozenset({Kind.int8})
    tasks = TASKS
    params = PtqParams
    formats = (FORMAT,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from zoo.techniques.int8 import expand_nodes, preset_for

        p: PtqParams = ctx.params  # type: ignore[assignment]
        preset = preset_for(p.isa, ctx.target.isa)
        src = ctx.parent_dir / "model.onnx"
        excluded = expand_nodes(src, p.exclude_nodes, f"recipes/{ctx.recipe_name}.yaml: exclude_nodes")
        calib = ctx.splits().calibration[: p.calibration.samples]
        quantize(src, ctx.out_dir / "model.onnx", ctx.parent_dir, calib, p, preset, excluded,
                 f"{ctx.model_id}:{ctx.variant_id}")
        _copy_sidecars(ctx.parent_dir, ctx.out_dir, dtype="int8",
                       quantized=f"static QDQ, {p.weights} weights per-{'channel' if p.per_channel else 'tensor'}, "
                                 f"{p.activations} activations ({p.calibration.method}, {len(calib)} images)")
        return {"format": FORMAT, "dtype": "int8", "quantization": {
            "mode": "static", "format": "QDQ", "per_channel": p.per_channel, "weights": p.weights,
            "activations": p.activations, "calibration": p.calibration.method, "calibration_images": len(calib),
            "preset": preset.isa, "preset_note": preset.note, "excluded_nodes": excluded}}


def quantize(src: Path, dest: Path, parent_dir: Path, calib: list, p: PtqParams, preset: Any,
             excluded: list[str], key: str) -> None:
    import contextlib
    import io
    import logging

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from zoo.families.object_detection.model import Detector

    det = Detector(parent_dir)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(calib)

        def get_next(self):
            s = next(self.rows, None)
            return None if s is None else {det.input: det.preprocess([s.image()])}

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[p.calibration.method]
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    options = {"WeightSymmetric": preset.weight_symmetric, "ActivationSymmetric": preset.activation_symmetric}
    if p.calibration.method == "percentile":
        options["CalibPercentile"] = p.calibration.percentile
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's pre-processing advice; its calibration progress goes to stdout
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(src), str(dest), Reader(), quant_format=QuantFormat.QDQ, per_channel=p.per_channel,
                            reduce_range=preset.reduce_range, activation_type=qtype[p.activations],
                            weight_type=qtype[p.weights], nodes_to_exclude=excluded or None,
                            calibrate_method=method, extra_options=options)
    except Exception as e:  # onnxruntime raises many types; keep the first line
        raise ZooError(f"{key}: static quantization failed: {str(e).splitlines()[0] if str(e) else e!r}") from e
    finally:
        root.setLevel(level)


def _copy_sidecars(parent: Path, out: Path, **config: Any) -> None:
    import json

    shutil.copy2(parent / "anchors.npy", out / "anchors.npy")
    base = json.loads((parent / "config.json").read_text())
    base.pop("format", None)
    write_config(out, **{**base, **config})
