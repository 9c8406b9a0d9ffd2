"""The AI-text-detector family: the fast-detect-gpt builder (opening cut, split by source text, held-out generator),
the github: mirror source, and `zoo run` end to end on a tiny project (ROC AUC, k-fold, per-generator accuracy,
card limitations, Space)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tiny_detector import GENERATORS, make_pairs_mirror, make_tiny_detector_zoo

from zoo.errors import ZooError


def _dataset(source: str, sha: str | None, **options):
    from zoo.registry.schema import Dataset

    return Dataset(source=source, sha256=sha, labels=["human", "machine"],
                   builder={"name": "fast-detect-gpt", "options": {"min_words": 5, **options}},
                   split={"train": 90, "test": 60, "calibration": 8, "seed": 0})


def test_split_by_source_cut_opening_and_holdout(tmp_path, monkeypatch):
    from zoo.families.text_classification.ai_text_detection.data import groups_disjoint, load_detector_splits
    from zoo.sources import sha256_tree

    folder = make_pairs_mirror(tmp_path / "mirror")
    monkeypatch.setenv("ZOO_MIRRORS", str(tmp_path / "mirror"))
    ds = _dataset("github:example/fast-detect-gpt@971b052#exp_main/data", sha256_tree(folder), holdout=["gen-c"])
    splits = load_detector_splits(ds, tmp_path, "dataset")
    assert groups_disjoint(splits), "a source text straddles train and test"
    assert "gen-c" not in {splits.generators[i] for i in splits.train.indices}
    assert "gen-c" in {splits.generators[i] for i in splits.test.indices}
    opening = json.loads((folder / "xsum_gen-a.raw_data.json").read_text())["original"][0].split()[:30]
    assert not any(t.split()[:5] == opening[:5] for t in splits.train.inputs + splits.test.inputs)
    assert len(splits.test) == 60 and len(splits.train) <= 90


def test_github_source_checks_sha256_and_says_how_to_fix(tmp_path, monkeypatch):
    from zoo.families.text_classification.ai_text_detection.data import load_detector_splits

    make_pairs_mirror(tmp_path / "mirror")
    monkeypatch.setenv("ZOO_MIRRORS", str(tmp_path / "mirror"))
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    ds = _dataset("github:example/fast-detect-gpt@971b052#exp_main/data", "0" * 64)
    monkeypatch.setattr("zoo.mirrors._download", lambda p, dest, field: (_ for _ in ()).throw(
        ZooError(f"{field}: offline")))
    with pytest.raises(ZooError, match="offline"):
        load_detector_splits(ds, tmp_path, "dataset")


def test_unknown_holdout_generator_is_one_line_error(tmp_path, monkeypatch):
    from zoo.families.text_classification.ai_text_detection.data import load_detector_splits
    from zoo.sources import sha256_tree

    folder = make_pairs_mirror(tmp_path / "mirror")
    monkeypatch.setenv("ZOO_MIRRORS", str(tmp_path / "mirror"))
    ds = _dataset("github:example/fast-detect-gpt@971b052#exp_main/data", sha256_tree(folder), holdout=["gpt-9"])
    with pytest.raises(ZooError, match=r"holdout: no generator \['gpt-9'\].*gen-a"):
        load_detector_splits(ds, tmp_path, "dataset")


def test_unknown_builder_is_one_line_error(tmp_path):
    from zoo.families import family_of
    from zoo.registry.schema import Model

    model = Model.model_validate({
        "task": "text-classification", "license": "mit", "base": {"source": "file:x"},
        "dataset": {"source": "file:x", "builder": {"name": "fast-detect-gtp"}},
        "evaluation": {"metrics": ["accuracy"]},
        "variants": {"fp32": {"kind": "fp32", "recipe": "finetune", "target": "cpu"}}})
    with pytest.raises(ZooError, match=r"dataset.builder.name: unknown data builder 'fast-detect-gtp' \(did you mean "
                                       r"'fast-detect-gpt'\?\)"):
        family_of("text-classification").load_splits(model, tmp_path, "dataset")


def test_roc_auc_interval_is_sklearns_value_inside_its_interval():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from zoo import metrics

    rng = np.random.default_rng(0)
    labels = [0] * 40 + [1] * 40
    scores = list(rng.normal(size=40)) + list(rng.normal(1.0, size=40))
    iv = metrics.roc_auc_interval(labels, scores, seed=0, resamples=500)
    assert iv["value"] == pytest.approx(roc_auc_score(labels, scores))
    assert iv["low"] < iv["value"] < iv["high"] and iv["rows"] == 80
    assert not metrics.spec("roc_auc").per_row and metrics.spec("wer").higher_is_better is False


@pytest.mark.slow
def test_zoo_run_detector_end_to_end(tmp_path):
    project = tmp_path / "project"
    reg = make_tiny_detector_zoo(project, tmp_path / "mirror")
    env = {**os.environ, "ZOO_MIRRORS": str(tmp_path / "mirror"), "COLUMNS": "200", "ZOO_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "zoo", "run"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    from zoo import plan, registry
    from zoo.status import read_results
    from zoo.store import Store

    loaded = registry.load(reg)
    store = Store.for_registry(loaded.path)
    fp32 = next(n for n in plan.make(loaded) if n.variant_id == "fp32")
    res = read_results(store, fp32)
    assert set(res["metrics"]) == {"accuracy", "f1", "roc_auc"}
    auc = res["intervals"]["roc_auc"]
    assert 0.0 <= auc["low"] <= res["metrics"]["roc_auc"] <= auc["high"] <= 1.0
    assert res["kfold"]["accuracy"]["k"] == 3 and "roc_auc" not in res["kfold"]  # k-fold spreads per-row metrics
    per_gen = res["details"]["per_generator"]
    assert set(per_gen) == {"human", *GENERATORS}
    assert sum(g["rows"] for g in per_gen.values()) == res["samples"]
    readmes = [p.read_text() for p in project.rglob("README.md") if "tiny-detector" in p.read_text()]
    assert any("Limitations of a detector" in r for r in readmes), "the card does not state a detector's limits"
    assert any("per generator" in r.lower() for r in readmes)
    space = [p for p in project.rglob("app.py") if "demo" in str(p) or "space" in str(p)]
    assert space, "no Space was written"
