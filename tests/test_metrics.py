"""The metric registry, bootstrap intervals, the paired comparison and the non-inferiority verdict."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import metrics
from zoo.errors import ZooError


def _preds(n: int, acc: float, flip: float, seed: int = 0, classes: int = 2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    ref = np.where(rng.random(n) < acc, y, (y + 1) % classes)
    var = np.where(rng.random(n) < flip, (ref + 1) % classes, ref)
    return y, ref, var


def test_every_registry_metric_has_one_spec_and_directions_come_from_it():
    from zoo.families import FAMILIES

    assert set(metrics.METRICS) == {m for f in FAMILIES for m in f.metrics}
    assert {"perplexity", "wer"} == metrics.LOWER_IS_BETTER
    with pytest.raises(ZooError, match="unknown metric 'bleu'"):
        metrics.spec("bleu")


@pytest.mark.parametrize("classes", [2, 5])
def test_the_vectorized_statistics_equal_scikit_learn(classes):
    y, _, p = _preds(300, 0.7, 0.1, seed=3, classes=classes)
    assert metrics._macro_f1_vec(y, p) == pytest.approx(metrics.macro_f1(y, p))
    assert metrics._vector_stat("accuracy")(y, p) == pytest.approx(metrics.accuracy(y, p))
    # many resamples at once, as scipy passes them
    batch_y, batch_p = np.stack([y, y[::-1]]), np.stack([p, p[::-1]])
    assert metrics._macro_f1_vec(batch_y, batch_p, axis=-1) == pytest.approx([metrics.macro_f1(y, p)] * 2)


def test_the_interval_narrows_with_more_rows_and_is_seeded():
    y, ref, _ = _preds(500, 0.78, 0)
    small = metrics.interval("accuracy", y, ref, seed=0)
    assert small["low"] < small["value"] < small["high"] and small["rows"] == 500 and small["resamples"] >= 1000
    assert 0.03 < metrics.half_width(small) < 0.045  # about ±3.7 points at 500 rows, as the binomial says
    y4, ref4, _ = _preds(2000, 0.78, 0)
    assert metrics.half_width(metrics.interval("accuracy", y4, ref4)) < 0.6 * metrics.half_width(small)
    assert metrics.interval("accuracy", y, ref, seed=0) == small
    assert metrics.interval("accuracy", y, ref, seed=1) != small


def test_the_paired_ratio_interval_is_far_narrower_than_the_accuracies():
    y, ref, var = _preds(2000, 0.78, 0.02)
    cmp = metrics.compare("accuracy", y, var, ref)
    assert cmp["agreement"] == pytest.approx(float(np.mean(var == ref)))
    assert cmp["ratio"]["value"] == pytest.approx(cmp["value"] / cmp["reference"])
    assert cmp["ratio"]["low"] < cmp["ratio"]["value"] < cmp["ratio"]["high"]
    unpaired = metrics.half_width(metrics.interval("accuracy", y, ref)) / cmp["reference"]
    assert metrics.half_width(cmp["ratio"]) < 0.6 * unpaired
    assert cmp["diff"]["low"] < cmp["diff"]["value"] < cmp["diff"]["high"]


def test_identical_predictions_give_a_point_interval_at_one():
    y, ref, _ = _preds(100, 0.8, 0)
    cmp = metrics.compare("f1", y, ref, ref, n_classes=2)
    assert cmp["ratio"] == {"value": 1.0, "low": 1.0, "high": 1.0} and cmp["agreement"] == 1.0


def test_the_verdict_passes_on_the_lower_bound_and_names_the_way_it_failed():
    assert metrics.verdict(0.991, 1.01, 0.99) == "pass"
    assert metrics.verdict(0.97, 0.985, 0.99) == "worse"
    assert metrics.verdict(0.98, 1.00, 0.99) == "not enough evidence"
    # the same small loss: undecided on few rows, decided on many
    y, ref, var = _preds(200, 0.78, 0.03, seed=5)
    few = metrics.compare("accuracy", y, var, ref)
    assert metrics.verdict(few["ratio"]["low"], few["ratio"]["high"], 0.99) == "not enough evidence"


def test_paired_comparison_refuses_different_rows():
    with pytest.raises(ZooError, match="same test rows"):
        metrics.compare("accuracy", [0, 1, 1], [0, 1, 1], [0, 1])


def test_ratio_is_inverted_for_lower_is_better():
    assert metrics.ratio("perplexity", 12.0, 10.0) == pytest.approx(10 / 12)
