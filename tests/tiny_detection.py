"""A tiny object-detection project built from a config: a random SSD-like ONNX network (NHWC conv head on a 4x4
anchor grid), a coco128-like YOLO-layout set of coloured-rectangle images, and a registry around them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAMES = ["red", "green", "blue"]
SIZE = 32  # network input side
GRID = 4  # anchors per side (one per cell)
COLORS = [(220, 30, 30), (30, 200, 30), (30, 30, 220)]


def make_tiny_detector(path: Path, n_logits: int = 4, seed: int = 0) -> Path:
    """An already-converted detector folder: model.onnx [1,S,S,3] → (boxes [1,A,1,4], logits [1,A,n_logits])."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stride = SIZE // GRID
    out_ch = 4 + n_logits
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((out_ch, 8, stride, stride)) * 0.05).astype(np.float32)
    anchors_n = GRID * GRID
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[stride, stride]),
        helper.make_node("Transpose", ["c2"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "shape"], ["flat"]),
        helper.make_node("Split", ["flat", "split"], ["b", "logits"], axis=2),
        helper.make_node("Reshape", ["b", "bshape"], ["boxes"]),
    ]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([1, anchors_n, out_ch], np.int64), "shape"),
             numpy_helper.from_array(np.array([4, n_logits], np.int64), "split"),
             numpy_helper.from_array(np.array([1, anchors_n, 1, 4], np.int64), "bshape")]
    graph = helper.make_graph(
        nodes, "tiny-ssd", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, anchors_n, 1, 4]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, anchors_n, n_logits])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path / "model.onnx"))
    cells = (np.arange(GRID) + 0.5) / GRID
    yc, xc = np.meshgrid(cells, cells, indexing="ij")
    half = 0.6 / GRID
    anchors = np.stack([yc - half, xc - half, yc + half, xc + half], -1).reshape(-1, 4).astype(np.float32)
    np.save(path / "anchors.npy", anchors)
    np.save(path / "logits_dim.npy", np.asarray(n_logits))
    return path


def make_tiny_coco(path: Path, train: int = 12, val: int = 10, seed: int = 0) -> Path:
    """coco128's layout: images/<split>/*.jpg and object_detection/labels/<split>/*.txt with 1-3 rectangles each."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for split, count in (("train2017", train), ("val2017", val)):
        (path / "images" / split).mkdir(parents=True, exist_ok=True)
        (path / "object_detection" / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            w, h = int(rng.integers(48, 80)), int(rng.integers(48, 80))
            im = Image.new("RGB", (w, h), (128, 128, 128))
            pen = ImageDraw.Draw(im)
            lines = []
            for _ in range(int(rng.integers(1, 4))):
                c = int(rng.integers(0, len(NAMES)))
                bw, bh = int(rng.integers(10, w // 2)), int(rng.integers(10, h // 2))
                x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                pen.rectangle([x0, y0, x0 + bw, y0 + bh], fill=COLORS[c])
                lines.append(f"{c} {(x0 + bw / 2) / w:.6f} {(y0 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
            name = f"{i:012d}"
            im.save(path / "images" / split / f"{name}.jpg", quality=95)
            (path / "object_detection" / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(NAMES))
    (path / "object_detection" / "config.yaml").write_text(f"path: .\nnames:\n{names}\n")
    return path


REGISTRY = """\
org: tiny
targets:
  x86-avx512: {device: cpu, arch: x86_64, isa: avx512, runtime: onnxruntime, dtypes: [fp32, int8]}
  arm64-rpi5: {device: cpu, arch: aarch64, isa: arm64, board: Raspberry Pi 5, runtime: onnxruntime,
               dtypes: [fp32, int8]}
  cuda: {device: gpu, runtime: torch, dtypes: [fp32, fp16]}
models:
  tiny-det:
    description: A tiny SSD-like detector on coloured rectangles.
    task: object-detection
    license: apache-2.0
    base: {source: "file:assets/tiny-det"}
    dataset:
      source: "file:assets/coco-tiny"
      label: null
      split: {train: 12, test: 10, calibration: 6, seed: 0}
    evaluation:
      metrics: [map, map50]
      seed: 0
      batch_size: 1
      repeats: 3
      gate: {min_ratio: 0.01, of: fp32}
    variants:
      fp32: {kind: fp32, from: base, recipe: det-convert, target: x86-avx512}
      w16a16: {kind: w16a16, from: fp32, recipe: det-fp16, target: cuda}
      int8: {kind: int8, from: fp32, recipe: det-int8, target: x86-avx512}
      int8-entropy: {kind: int8, from: fp32, recipe: det-int8-entropy, target: x86-avx512}
      int8-rpi5: {kind: int8, from: fp32, recipe: det-int8-arm64, target: arm64-rpi5}
"""

RECIPES = {
    "det-convert": "technique: detection-convert\ninput_size: 32\n",
    "det-fp16": "technique: detection-fp16\n",
    "det-int8": "technique: detection-ptq\ncalibration: {method: minmax, samples: 6}\n",
    "det-int8-entropy": "technique: detection-ptq\ncalibration: {method: entropy, samples: 6}\n",
    "det-int8-arm64": "technique: detection-ptq\nisa: arm64\ncalibration: {method: minmax, samples: 6}\n",
}


def make_tiny_detection_zoo(root: Path) -> Path:
    """The whole project; returns its registry.yaml."""
    make_tiny_detector(root / "assets" / "tiny-det")
    make_tiny_coco(root / "assets" / "coco-tiny")
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    for name, text in RECIPES.items():
        (root / "recipes" / f"{name}.yaml").write_text(text)
    (root / "registry.yaml").write_text(REGISTRY)
    return root / "registry.yaml"
