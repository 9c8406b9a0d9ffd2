"""The ``onnx-detector`` artifact and its runtime: ``model.onnx`` maps normalised NHWC images to raw SSD outputs
(box encodings ``[N, A, 4]`` and class logits ``[N, A, C]``); ``anchors.npy`` and ``config.json`` hold what the
box decoding and NMS need. Decoding and NMS run here, in float, outside the (possibly quantized) network: that is
what keeps the int8 variants' boxes as precise as the network's outputs (recorded in every artifact's config).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:  # the Space copies this file beside its app, without the zoo
    from zoo.errors import ZooError
except ImportError:  # pragma: no cover
    ZooError = RuntimeError  # type: ignore[misc,assignment]

FORMAT = "onnx-detector"
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)  # TF Object Detection API's FasterRcnnBoxCoder scales (y, x, h, w)


@dataclass
class Detections:
    """One image's boxes (``xyxy`` in the image's pixels), scores and 0-based class ids."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def write_config(out_dir: Path, **config) -> None:
    (out_dir / "config.json").write_text(json.dumps({"format": FORMAT, **config}, indent=2))


class Detector:
    """A loaded ``onnx-detector`` artifact."""

    runtime = "onnxruntime"

    def __init__(self, artifact_dir: Path, threads: int = 1):
        import onnxruntime as ort

        config_path = artifact_dir / "config.json"
        if not config_path.is_file() or not (artifact_dir / "model.onnx").is_file():
            raise ZooError(f"'{artifact_dir}' is not an onnx-detector artifact (config.json + model.onnx + "
                           "anchors.npy): rebuild the variant")
        self.config = json.loads(config_path.read_text())
        self.size = int(self.config["input_size"])
        self.class_map = np.asarray(self.config["class_map"], np.int64)  # model class -> dataset id, -1 = none
        self.anchors = np.load(artifact_dir / "anchors.npy").astype(np.float32)  # [A, 4] ymin xmin ymax xmax
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(artifact_dir / "model.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.fp16 = self.session.get_inputs()[0].type == "tensor(float16)"

    def preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 HxWx3 images → float NHWC at the input size, scaled to [-1, 1] (the TF graph's preprocessor)."""
        from PIL import Image

        batch = np.stack([np.asarray(Image.fromarray(im).resize((self.size, self.size), Image.BILINEAR))
                          for im in images]).astype(np.float32)
        batch = batch * (2.0 / 255.0) - 1.0
        return batch.astype(np.float16) if self.fp16 else batch

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw box encodings [N, A, 4] and logits [N, A, C]; one image per run (the graph's batch is 1)."""
        outs = [self.session.run(None, {self.input: batch[i : i + 1]}) for i in range(len(batch))]
        boxes = np.concatenate([o[0].reshape(1, -1, 4) for o in outs])
        return boxes.astype(np.float32), np.concatenate([o[1] for o in outs]).astype(np.float32)

    def detect(self, images: list[np.ndarray], score_threshold: float | None = None) -> list[Detections]:
        """Boxes for each image, decoded and filtered by per-class NMS in the image's own pixel coordinates."""
        encodings, logits = self.raw(self.preprocess(images))
        thr = self.config.get("score_threshold", 0.01) if score_threshold is None else score_threshold
        return [self._post(e, lg, im.shape[1], im.shape[0], thr) for e, lg, im in zip(encodings, logits, images,
                                                                                     strict=True)]

    def label(self, class_id: int) -> str:
        names = self.config.get("label_names") or []
        return names[class_id] if 0 <= class_id < len(names) else str(class_id)

    def timed_detect(self, image: np.ndarray, score_threshold: float = 0.3) -> tuple[Detections, float]:
        start = time.perf_counter()
        det = self.detect([image], score_threshold)[0]
        return det, (time.perf_counter() - start) * 1000

    def _post(self, enc: np.ndarray, logits: np.ndarray, width: int, height: int, thr: float) -> Detections:
        a = self.anchors
        ya, xa = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
        ha, wa = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        sy, sx, sh, sw = BOX_SCALES
        yc, xc = enc[:, 0] / sy * ha + ya, enc[:, 1] / sx * wa + xa
        h, w = np.exp(enc[:, 2] / sh) * ha, np.exp(enc[:, 3] / sw) * wa
        boxes = np.stack([(xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height],
                         axis=1).clip(0, [width, height, width, height])
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep_b, keep_s, keep_c = [], [], []
        for model_class in np.nonzero(self.class_map >= 0)[0]:
            s = scores[:, model_class]
            idx = np.nonzero(s >= thr)[0]
            if not len(idx):
                continue
            kept = nms(boxes[idx], s[idx], self.config.get("iou_threshold", 0.6),
                       self.config.get("max_per_class", 100))
            keep_b.append(boxes[idx][kept])
            keep_s.append(s[idx][kept])
            keep_c.append(np.full(len(kept), self.class_map[model_class]))
        if not keep_b:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        b, s, c = np.concatenate(keep_b), np.concatenate(keep_s), np.concatenate(keep_c)
        top = np.argsort(-s, kind="stable")[: self.config.get("max_detections", 100)]
        return Detections(b[top].astype(np.float32), s[top].astype(np.float32), c[top].astype(np.int64))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Greedy non-maximum suppression (the TF graph's per-class NMS): indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while len(order) and len(kept) < limit:
        i, rest = order[0], order[1:]
        kept.append(int(i))
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-9) <= iou]
    return np.asarray(kept, np.int64)


def draw(image: np.ndarray, det: Detections, names: list[str], threshold: float = 0.3) -> np.ndarray:
    """``image`` with the boxes scoring at least ``threshold`` drawn and labelled."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(image).convert("RGB")
    pen = ImageDraw.Draw(im)
    width = max(2, round(max(im.size) / 300))
    for box, score, c in zip(det.boxes, det.scores, det.classes, strict=True):
        if score < threshold:
            continue
        color = PALETTE[int(c) % len(PALETTE)]
        x0, y0, x1, y1 = (float(v) for v in box)
        pen.rectangle([x0, y0, x1, y1], outline=color, width=width)
        name = names[int(c)] if 0 <= int(c) < len(names) else str(int(c))
        pen.text((x0 + 3, y0 + 2), f"{name} {score:.2f}", fill=color)
    return np.asarray(im)


PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990",
           "#9a6324", "#800000", "#808000", "#000075"]
