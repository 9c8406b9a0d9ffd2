"""coco128 in YOLO layout: ``images/{train2017,val2017}/*.jpg`` with ``object_detection/labels/<split>/*.txt``
(``class cx cy w h`` normalised) and the 80 class names in ``object_detection/config.yaml``.

Calibration and fine-tune rows come from train2017, evaluation rows from val2017; nothing else is mixed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.errors import ZooError


@dataclass
class Sample:
    """One image and its ground-truth boxes (``xyxy`` in pixels) with 0-based class ids (the 80 YOLO ids)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4] x0 y0 x1 y1 in pixels
    classes: np.ndarray  # int64 [N]

    def image(self) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path) as im:
            return np.asarray(im.convert("RGB"))


@dataclass
class DetectionSplits:
    """The rows of one seed: ``train`` (fine-tune), ``calibration`` (a seeded subset of train) and ``test``."""

    train: list[Sample]
    calibration: list[Sample]
    test: list[Sample]
    label_names: list[str]
    source: str
    sha256: str | None
    seed: int
    meta: dict = field(default_factory=dict)

    def describe(self, split: str) -> dict:
        rows = getattr(self, split)
        ids = ",".join(s.path.stem for s in rows)
        return {"source": self.source, "sha256": self.sha256, "split": split, "seed": self.seed,
                "rows": len(rows), "indices_sha256": hashlib.sha256(ids.encode()).hexdigest()}


def read_split(folder: Path, split: str, field_name: str) -> list[Sample]:
    """Every image of ``split`` with its label file (an image without one has no objects)."""
    from PIL import Image

    images = folder / "images" / split
    labels = folder / "object_detection" / "labels" / split
    if not images.is_dir():
        raise ZooError(f"{field_name}: '{images}' is missing: the dataset must be coco128 in YOLO layout "
                       "(images/<split>/*.jpg, object_detection/labels/<split>/*.txt)")
    out = []
    for path in sorted(images.glob("*.jpg")):
        with Image.open(path) as im:
            w, h = im.size
        rows = np.zeros((0, 5), np.float32)
        label = labels / f"{path.stem}.txt"
        if label.is_file() and label.stat().st_size:
            rows = np.loadtxt(label, dtype=np.float32, ndmin=2)
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
        out.append(Sample(path, w, h, boxes, rows[:, 0].astype(np.int64)))
    return out


def label_names(folder: Path, field_name: str) -> list[str]:
    import yaml

    config = folder / "object_detection" / "config.yaml"
    try:
        names = yaml.safe_load(config.read_text())["names"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
        raise ZooError(f"{field_name}: cannot read the class names from '{config}' ({e}): "
                       "it must hold a 'names' mapping id -> name") from None
    return [names[i] for i in sorted(names)]


def load_detection_splits(folder: Path, source: str, sha256: str | None, train: int, test: int, calibration: int,
                          seed: int, field_name: str) -> DetectionSplits:
    train_rows = read_split(folder, "train2017", field_name)[:train]
    test_rows = read_split(folder, "val2017", field_name)[:test]
    rng = random.Random(seed)
    calib = sorted(rng.sample(range(len(train_rows)), min(calibration, len(train_rows))))
    return DetectionSplits(train_rows, [train_rows[i] for i in calib], test_rows, label_names(folder, field_name),
                           source, sha256, seed)
