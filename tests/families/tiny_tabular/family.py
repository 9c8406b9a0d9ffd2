"""Tabular classification: rows of numeric features and a class column, accuracy / macro-F1 with intervals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from zoo.data import Split, Splits
from zoo.families.base import Family, PerfModel, Scores, alternate, seeded_subset
from zoo.registry.schema import Model

from . import model as tabular


class TabularClassification(Family):
    task = "tabular-classification"
    formats = (tabular.FORMAT,)
    metrics = ("accuracy", "f1")
    space_packages = ("gradio", "huggingface_hub", "torch", "safetensors")

    def techniques(self) -> list[Any]:
        from .techniques import TabularFit, TabularHalf

        return [TabularFit(), TabularHalf()]

    def load_splits(self, model: Model, root: Path, field: str) -> Splits:
        import random

        import pandas as pd

        from zoo.sources import resolve

        ds = model.dataset
        path = resolve(ds.source, ds.sha256, root, f"{field}.source", ds.revision)
        table = pd.read_csv(path)
        table = table[table[ds.label].isin(ds.labels)]
        features = [c for c in table.columns if c != ds.label]
        rows = [([float(v) for v in r[features]], ds.labels.index(r[ds.label])) for _, r in table.iterrows()]
        order = list(range(len(rows)))
        random.Random(ds.split.seed).shuffle(order)
        cut = {"train": order[: ds.split.train], "test": order[ds.split.train: ds.split.train + ds.split.test]}
        cut["calibration"] = cut["train"][: ds.split.calibration]

        def split(idx: list[int]) -> Split:
            return Split([rows[i][0] for i in idx], [rows[i][1] for i in idx], idx)

        return Splits(split(cut["train"]), split(cut["test"]), split(cut["calibration"]), list(ds.labels),
                      ds.source, ds.sha256 or "")

    def test_rows(self, model: Model, root: Path, field: str) -> Split:
        from zoo.data import load_splits

        test = load_splits(model, root, field).test
        keep = seeded_subset(len(test), model.evaluation.samples, model.evaluation.seed)
        if keep is None:
            return test
        return Split([test.inputs[i] for i in keep], [test.labels[i] for i in keep], [test.indices[i] for i in keep])

    def evaluate(self, artifact_dir: Path, model: Model, root: Path, field: str, device: str, key: str) -> Scores:
        from zoo import metrics
        from zoo.data import load_splits

        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        net, _config = tabular.load(artifact_dir)
        preds = tabular.predict(net, rows.inputs)
        n_classes = len(splits.label_names)
        scores = metrics.classification(list(model.evaluation.metrics), rows.labels, preds, n_classes)
        test = {**splits.describe("test"), "samples": len(rows), "indices_sha256": rows.indices_hash()}
        return Scores(scores, len(rows), test, None, {"runtime": "torch"},
                      {"labels": rows.labels, "preds": preds, "n_classes": n_classes})

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        net, config = tabular.load(artifact_dir)
        params = sum(p.numel() for p in net.parameters())
        dtype = {"float16": "fp16"}.get(config.get("torch_dtype"), "fp32")

        def runner(n: int):
            rows = [[5.0, 3.0, 4.0, 1.0]] * n
            return lambda: tabular.predict(net, rows)

        return PerfModel("torch", dtype, params, runner, "class indices of rows of four measurements",
                         {"features": config["features"]})

    def perf_input(self, seq_len: int, results: list[dict[str, Any]]) -> str:
        return "rows of 4 measurements"

    def examples(self, model: Model, root: Path, field: str, n: int, max_chars: int = 300) -> list[list[float]]:
        from zoo.data import load_splits

        test = load_splits(model, root, field).test
        by_label: dict[int, list[list[float]]] = {}
        for row, label in zip(test.inputs, test.labels, strict=True):
            by_label.setdefault(label, []).append(row)
        return alternate(by_label, n)

    def describe_example(self, loaded: Any, model_id: str) -> str:
        return json.dumps(self.examples(loaded.model(model_id), loaded.root, f"models.{model_id}.dataset", 1)[0])

    def space_spec(self, node: Any, art: Path, prov: dict[str, Any]) -> dict[str, Any]:
        return {"format": prov.get("format"), "label_names": prov.get("label_names")}

    def space_files(self, loaded: Any, model_id: str, out: Path, config: dict[str, Any]) -> None:
        model = loaded.model(model_id)
        config["examples"] = self.examples(model, loaded.root, f"models.{model_id}.dataset", 3)
        shutil.copyfile(self.folder / "model.py", out / "tabular_model.py")

    def load_lines(self, folder: Path, fmt: str | None) -> list[str]:
        where = json.dumps(str(folder))
        return ["import json, torch", "from safetensors.torch import load_file",
                f"config = json.load(open({json.dumps(str(folder / 'config.json'))}))",
                f"state = load_file({json.dumps(str(folder / 'model.safetensors'))})  # {where}: the pulled repo"]


FAMILY = TabularClassification()
