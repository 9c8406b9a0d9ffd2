"""Text classification: labelled table rows, accuracy / macro-F1 (and k-fold spread), timed on padded token batches."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.families.base import Family, PerfModel, Scores, alternate, seeded_subset
from zoo.registry.schema import Model

EVAL_BATCH = 32  # rows per forward pass when computing metrics (latency uses evaluation.batch_size)
MAX_CHARS = 1000  # input limit of the Space's text box
SPACE_EXAMPLES = 4  # example inputs in the Space
SAMPLE_TEXT = "the film was a quiet and moving story, warm and funny, with a cast that carries every scene " * 16


class TextClassification(Family):
    task = "text-classification"
    formats = ("transformers", "onnx", "bnb-4bit")
    metrics = ("accuracy", "f1", "roc_auc")
    auto_class = "AutoModelForSequenceClassification"
    adapter_note = "with the classification head in `modules_to_save`"
    gpu = True

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        from zoo.data import load_labelled_splits

        if model.dataset.builder is not None:
            return data_builder(model.dataset.builder.name, field)(model.dataset, root, field)
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
        from zoo import metrics
        from zoo.data import load_splits
        from zoo.families.text_classification import loaders

        ev = model.evaluation
        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        clf = loaders.load_classifier(artifact_dir, device=device)
        check_labels(clf.label_names, splits.label_names, key)
        logits = clf.predict(rows.inputs, ev.seq_len, EVAL_BATCH)
        preds = logits.argmax(axis=1).tolist()
        del clf
        gc.collect()
        names = [m for m in ev.metrics if metrics.spec(m).per_row]
        n_classes = len(splits.label_names or [])
        scores = metrics.classification(names, rows.labels, preds, n_classes)
        intervals = {}
        if "roc_auc" in ev.metrics:
            if logits.shape[1] != 2 or len(set(rows.labels)) != 2:
                raise ZooError(f"{key}: roc_auc needs two classes, both present in the test rows: drop it from "
                               "evaluation.metrics or widen the test split")
            margin = (logits[:, 1] - logits[:, 0]).tolist()
            intervals["roc_auc"] = metrics.roc_auc_interval(rows.labels, margin, ev.seed)
            scores["roc_auc"] = intervals["roc_auc"]["value"]
        folds = metrics.kfold(names, rows.labels, preds, ev.kfold, ev.seed, n_classes) if ev.kfold else None
        predictions = {"labels": [int(v) for v in rows.labels], "preds": [int(v) for v in preds],
                       "n_classes": n_classes}
        test = {**splits.describe("test"), "samples": len(rows), "indices_sha256": rows.indices_hash()}
        details = {}
        if generators := getattr(splits, "generators", None):
            from zoo.families.text_classification.ai_text_detection.data import per_generator

            details["per_generator"] = per_generator(generators, rows.indices, rows.labels, preds)
        return Scores(scores, len(rows), test, folds, details, predictions, intervals)

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        from zoo.families.text_classification import loaders

        clf = loaders.load_classifier(artifact_dir, device=device)

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
        return alternate(by_label, n)

    def recognises(self, config: dict[str, Any]) -> bool:
        return any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])

    def techniques(self) -> list[Any]:
        from zoo.families.text_classification.techniques import Finetune

        return [Finetune()]

    # ------------------------------------------------------------ card

    def card_section(self, loaded: Any, store: Any, node: Any, table: dict[str, Any], fmt: str) -> str:
        """What a detector's card must say (a ``fast-detect-gpt`` dataset): accuracy per generator, limitations."""
        model = loaded.model(node.model_id)
        if model.dataset.builder is None or model.dataset.builder.name != "fast-detect-gpt":
            return ""
        from zoo.families.text_classification.ai_text_detection.card import notes
        from zoo.status import read_results

        return notes(model, read_results(store, node))

    def usage_names(self, node: Any, fmt: str, art: Path | None, root: str | None) -> list[str]:
        """Its format's snippet, plus the ONNX graph a w16a16 folder carries beside its PyTorch weights."""
        if fmt == "onnx":
            names = ["onnx"]
        elif node.kind == "w16a16":
            names = ["fp16"]
        elif node.kind == "qlora-4bit" or fmt == "bnb-4bit":
            names = ["bnb-4bit"]
        else:
            names = ["transformers"]
        if node.kind == "w16a16" and art is not None and (art / "onnx" / "model.onnx").is_file():
            names.append("onnx-subfolder")
        return names

    # ------------------------------------------------------------ Space

    space_packages = ("gradio", "huggingface_hub", "torch", "transformers", "accelerate")

    def space_spec(self, node: Any, art: Path, prov: dict[str, Any]) -> dict[str, Any]:
        fmt, subfolder = prov.get("format", "transformers"), None
        if fmt == "bnb-4bit":
            fmt = "transformers"
        if node.kind == "w16a16" and (art / "onnx" / "model.onnx").is_file():
            # fp16 in PyTorch is slow on CPU; the fp16 ONNX graph beside it is what a CPU Space should run
            fmt, subfolder = "onnx", "onnx"
        return {"format": fmt, "subfolder": subfolder, "label_names": prov.get("label_names"),
                "max_length": prov.get("max_length")}

    def space_limits(self) -> dict[str, Any]:
        return {"max_chars": MAX_CHARS}

    def space_files(self, loaded: Any, model_id: str, out: Path, config: dict[str, Any]) -> None:
        """The example texts and the one bitsandbytes CPU-kernel guard the app imports."""
        write_text_examples(self, loaded, model_id, out, min(MAX_CHARS, 300))

    def space_requirements(self, specs: list[dict[str, Any]]) -> list[str]:
        return [*self.space_packages, *extra_text_packages(specs)]

    # ------------------------------------------------------------ zoo pull

    def load_lines(self, folder: Path, fmt: str | None) -> list[str]:
        where = json.dumps(str(folder))
        if fmt == "onnx":
            return ["import onnxruntime as ort", "from transformers import AutoConfig, AutoTokenizer",
                    f'session = ort.InferenceSession({json.dumps(str(folder / "model.onnx"))}, '
                    'providers=["CPUExecutionProvider"])',
                    f"tokenizer, config = AutoTokenizer.from_pretrained({where}), AutoConfig.from_pretrained({where})"]
        return super().load_lines(folder, fmt)


def _fast_detect_gpt(ds: Any, root: Path, field: str) -> Any:
    from zoo.families.text_classification.ai_text_detection.data import load_detector_splits

    return load_detector_splits(ds, root, field)


# dataset builders: readers of a source that is not a labelled table (registry ``dataset.builder.name``); imported
# in functions so that the code hash (an import closure) covers them
BUILDERS = {"fast-detect-gpt": _fast_detect_gpt}


def data_builder(name: str, field: str) -> Any:
    """The reader registered in :data:`BUILDERS` as ``name``: ``(dataset, root, field) -> Splits``.

    Raises:
        ZooError: no builder of that name.
    """
    from zoo.errors import did_you_mean

    if name not in BUILDERS:
        raise ZooError(f"{field}.builder.name: unknown data builder '{name}'{did_you_mean(name, BUILDERS)} for "
                       f"text-classification: use one of {', '.join(BUILDERS)}, or drop builder to read a table")
    return BUILDERS[name]


def write_text_examples(family: Family, loaded: Any, model_id: str, out: Path, max_chars: int) -> None:
    """A text Space's ``examples.json`` and the ``nf4_guard.py`` its app imports."""
    from zoo import nf4_guard
    from zoo.store import write_json

    model = loaded.model(model_id)
    write_json(out / "examples.json", family.examples(model, loaded.root, f"models.{model_id}.dataset",
                                                      SPACE_EXAMPLES, max_chars=max_chars))
    shutil.copyfile(Path(nf4_guard.__file__), out / "nf4_guard.py")


def extra_text_packages(specs: list[dict[str, Any]]) -> list[str]:
    """What a transformers-based app needs beyond its base packages for the formats among ``specs``."""
    names = []
    if any(s["format"] == "onnx" for s in specs):
        names.append("onnxruntime")
    if any(s["format"] == "onnx-genai" for s in specs):
        names.append("onnxruntime-genai")
    if any(s["kind"] == "qlora-4bit" for s in specs):
        names.append("bitsandbytes")
    if any(s.get("adapter_subfolder") for s in specs):
        names.append("peft")
    return names


def check_labels(artifact_labels: list[str] | None, data_labels: list[str] | None, key: str) -> None:
    """Refuse an artifact whose class names are not the dataset's (generic LABEL_i names are accepted)."""
    generic = artifact_labels is not None and all(lbl == f"LABEL_{i}" for i, lbl in enumerate(artifact_labels))
    if artifact_labels and data_labels and not generic and artifact_labels != data_labels:
        raise ZooError(f"{key}: the artifact's labels {artifact_labels} are not the dataset's {data_labels}: "
                       f"rebuild it with `zoo build {key} --force`")


FAMILY = TextClassification()
