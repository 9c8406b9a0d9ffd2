"""Text classification: labelled table rows, accuracy / macro-F1 (and k-fold spread), timed on padded token batches."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.registry.schema import Model, Task
from zoo.tasks.base import PerfModel, Scores, TaskHandler, seeded_subset

EVAL_BATCH = 32  # rows per forward pass when computing metrics (latency uses evaluation.batch_size)
SAMPLE_TEXT = "the film was a quiet and moving story, warm and funny, with a cast that carries every scene " * 16


class TextClassification(TaskHandler):
    task = Task.text_classification
    formats = ("transformers", "onnx")
    gpu = True

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        from zoo.data import load_labelled_splits

        return load_labelled_splits(model.dataset, root, field)

    def test_rows(self, model: Model, root: Path, field: str) -> Any:
        from zoo.data import Split, load_splits

        test = load_splits(model, root, field).test
        keep = seeded_subset(len(test), model.evaluation.samples, model.evaluation.seed)
        if keep is None:
            return test
        return Split([test.inputs[i] for i in keep], [test.labels[i] for i in keep] if test.labels else None,
                     [test.indices[i] for i in keep])

    def evaluate(self, artifact_dir: Path, model: Model, root: Path, field: str, device: str, key: str) -> Scores:
        from zoo import formats, metrics
        from zoo.data import load_splits

        ev = model.evaluation
        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        clf = formats.load_classifier(artifact_dir, device=device)
        check_labels(clf.label_names, splits.label_names, key)
        preds = clf.predict(rows.inputs, ev.seq_len, EVAL_BATCH).argmax(axis=1).tolist()
        del clf
        gc.collect()
        names = [m.value for m in ev.metrics]
        n_classes = len(splits.label_names or [])
        scores = metrics.classification(names, rows.labels, preds, n_classes)
        folds = metrics.kfold(names, rows.labels, preds, ev.kfold, ev.seed, n_classes) if ev.kfold else None
        predictions = {"labels": [int(v) for v in rows.labels], "preds": [int(v) for v in preds],
                       "n_classes": n_classes}
        test = {**splits.describe("test"), "samples": len(rows), "indices_sha256": rows.indices_hash()}
        return Scores(scores, len(rows), test, folds, predictions=predictions)

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        from zoo import formats

        clf = formats.load_classifier(artifact_dir, device=device)

        def runner(n: int):
            inputs = clf.encode([SAMPLE_TEXT] * n, seq_len, pad_to_max=True)
            return lambda: clf.forward(inputs)

        return PerfModel(clf.runtime, clf.dtype, clf.params_count(), runner,
                         f"one forward pass over token ids padded to {seq_len} (tokenization not timed)",
                         {"seq_len": seq_len})

    def examples(self, model: Model, root: Path, field: str, n: int, max_chars: int = 300) -> list[str]:
        """Up to ``n`` short test texts (whitespace collapsed), alternating over the labels."""
        from zoo.data import load_splits

        test = load_splits(model, root, field).test
        by_label: dict[Any, list[str]] = {}
        for text, label in zip(test.inputs, test.labels or [None] * len(test), strict=True):
            if isinstance(text, str) and 0 < len(text.strip()) <= max_chars:
                by_label.setdefault(label, []).append(" ".join(text.split()))
        if not by_label:
            raise ZooError(f"{field}: no test row of at most {max_chars} characters to use as an example input")
        return _alternate(by_label, n)


def check_labels(artifact_labels: list[str] | None, data_labels: list[str] | None, key: str) -> None:
    """Refuse an artifact whose class names are not the dataset's (generic LABEL_i names are accepted)."""
    generic = artifact_labels is not None and all(lbl == f"LABEL_{i}" for i, lbl in enumerate(artifact_labels))
    if artifact_labels and data_labels and not generic and artifact_labels != data_labels:
        raise ZooError(f"{key}: the artifact's labels {artifact_labels} are not the dataset's {data_labels}: "
                       f"rebuild it with `zoo build {key} --force`")


def _alternate(by_label: dict[Any, list[Any]], n: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < n and any(by_label.values()):
        for label in list(by_label):
            if by_label[label] and len(out) < n:
                out.append(by_label[label].pop(0))
    return out
