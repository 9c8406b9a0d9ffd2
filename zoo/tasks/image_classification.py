"""Image classification: uint8 image sets, top-1 (and accuracy / macro-F1, k-fold spread), timed on image batches
at the artifact's input size."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from zoo.registry.schema import Model, Task
from zoo.tasks.base import PerfModel, Scores, TaskHandler, params_from_provenance, seeded_subset
from zoo.tasks.text_classification import _alternate, check_labels

EVAL_BATCH = 64  # images per forward pass when computing metrics


class ImageClassification(TaskHandler):
    task = Task.image_classification
    formats = ("torch-image", "onnx-image")

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        from zoo.vision.data import load_image_splits

        return load_image_splits(model.dataset, root, field)

    def test_rows(self, model: Model, root: Path, field: str) -> Any:
        from zoo.data import load_splits
        from zoo.vision.data import ImageSplit

        test = load_splits(model, root, field).test
        keep = seeded_subset(len(test), model.evaluation.samples, model.evaluation.seed)
        if keep is None:
            return test
        return ImageSplit(test.images[keep], test.labels[keep], [test.indices[i] for i in keep])

    def evaluate(self, artifact_dir: Path, model: Model, root: Path, field: str, device: str, key: str) -> Scores:
        from zoo import metrics
        from zoo.data import load_splits

        ev = model.evaluation
        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        clf = _load(artifact_dir)
        check_labels(clf.label_names, splits.label_names, key)
        preds = clf.logits(rows.images, EVAL_BATCH).argmax(axis=1).tolist()
        labels = rows.labels.tolist()
        names = [m.value for m in ev.metrics]
        n_classes = len(splits.label_names)
        scores = metrics.classification(names, labels, preds, n_classes)
        folds = metrics.kfold(names, labels, preds, ev.kfold, ev.seed, n_classes) if ev.kfold else None
        predictions = {"labels": [int(v) for v in labels], "preds": [int(v) for v in preds],
                       "n_classes": n_classes}
        test = {**splits.describe("test"), "samples": len(rows), "indices_sha256": rows.indices_hash()}
        return Scores(scores, len(rows), test, folds, {"image_size": clf.image_size, "runtime": clf.runtime},
                      predictions)

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        import numpy as np

        from zoo.formats import onnx_params, read_provenance

        clf = _load(artifact_dir)
        size = clf.image_size
        rng = np.random.default_rng(0)

        def runner(n: int):
            images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            return lambda: clf.logits(images, batch_size=n)

        onnx = artifact_dir / "model.onnx"
        params = params_from_provenance(artifact_dir) or (
            onnx_params(onnx) if onnx.is_file() else _safetensors_params(artifact_dir / "model.safetensors"))
        dtype = read_provenance(artifact_dir).get("dtype") or clf.config.get("dtype", "fp32")
        return PerfModel(clf.runtime, dtype, params, runner,
                         f"logits of uint8 {size}x{size}x3 images already at the model's input size "
                         "(normalisation included, no resize)", {"image_size": size})

    def examples(self, model: Model, root: Path, field: str, n: int) -> list[Any]:
        """Up to ``n`` test images (uint8 HxWx3 numpy arrays), alternating over the classes."""
        from zoo.data import load_splits

        test = load_splits(model, root, field).test
        by_label: dict[Any, list[Any]] = {}
        for image, label in zip(test.images, test.labels.tolist(), strict=True):
            by_label.setdefault(label, []).append(image)
        return _alternate(by_label, n)


def _load(artifact_dir: Path) -> Any:
    from zoo.formats import threads
    from zoo.vision import load_image_classifier

    return load_image_classifier(artifact_dir, threads=threads())


def _safetensors_params(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        names = f.keys()  # a safetensors handle is not iterable
        return sum(math.prod(f.get_slice(k).get_shape()) for k in names)
