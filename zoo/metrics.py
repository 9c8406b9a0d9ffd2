"""The metric registry (name, direction, how it is computed) and the statistics every reported number carries.

Every metric a registry may name is declared once in :data:`METRICS`: whether higher is better and whether it is
computed from per-row predictions. For a per-row metric, a result carries a 95% interval (seeded percentile
bootstrap over the test rows, ``scipy.stats.bootstrap``) and a comparison with a reference is *paired*: both were
scored on the same rows, so the rows are resampled together and the interval is that of the difference and of the
ratio, not of two independent figures. Point values come from scikit-learn.

The gate is a non-inferiority test on the ratio (variant / reference, or reference / variant when lower is better):
it passes when the interval's lower bound is ≥ ``min_ratio``; it fails as "worse" when the whole interval lies below
``min_ratio`` and as "not enough evidence" when the interval straddles it (more test rows would decide).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.errors import ZooError

LEVEL = 0.95  # confidence level of every interval
RESAMPLES = 2000  # bootstrap resamples (the field's usual minimum is 1,000)


@dataclass(frozen=True)
class MetricSpec:
    """One metric's facts; the rest of the zoo asks here instead of keeping its own lists."""

    name: str
    higher_is_better: bool
    per_row: bool  # computed from per-row (label, prediction) pairs: intervals and paired comparisons apply
    description: str


METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("accuracy", True, True, "fraction of test rows whose top-1 prediction is the label"),
    MetricSpec("top1", True, True, "fraction of test images whose top-1 prediction is the label"),
    MetricSpec("f1", True, True, "macro F1: the unweighted mean of per-class F1"),
    MetricSpec("perplexity", False, False, "exp of the mean next-token negative log-likelihood"),
    MetricSpec("exact_match", True, False, "fraction of held-out next words predicted exactly"),
    MetricSpec("map", True, False, "COCO mAP@0.5:0.95 over the test images (pycocotools)"),
    MetricSpec("map50", True, False, "COCO mAP@0.5 over the test images (pycocotools)"),
    # ranking quality of a binary classifier's score; its interval needs the scores, so the family computes it
    MetricSpec("roc_auc", True, False, "area under the ROC curve of the class-1 score (binary tasks)"),
    MetricSpec("wer", False, False, "word error rate of the transcripts (jiwer), lower is better"),
)}
# How cards name a metric (registry metrics, and the generation metrics a family records beside them)
LABELS = {"top1": "top-1 accuracy", "perplexity": "perplexity, lower is better",
          "exact_match": "next-word accuracy (cloze)", "roc_auc": "ROC AUC",
          "wer": "word error rate, lower is better",
          "repeated_ngram_rate": "repeated word-trigram rate of greedy continuations, lower is better",
          "distinct_2": "distinct-2 of greedy continuations",
          "rouge_l": "ROUGE-L of greedy continuations against the held-out text"}
LOWER_IS_BETTER = frozenset(n for n, m in METRICS.items() if not m.higher_is_better)
CLASSIFICATION = frozenset(n for n, m in METRICS.items() if m.per_row)


def spec(name: str) -> MetricSpec:
    """The facts of metric ``name``.

    Raises:
        ZooError: an unknown metric.
    """
    try:
        return METRICS[str(name)]
    except KeyError:
        raise ZooError(f"evaluation.metrics: unknown metric '{name}': use one of {', '.join(METRICS)}") from None


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Fraction of rows whose prediction equals the label (scikit-learn's accuracy_score)."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, preds)) if len(labels) else 0.0


def macro_f1(labels: Sequence[int], preds: Sequence[int], n_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in labels or predictions (scikit-learn's macro F1).

    ``n_classes`` is accepted for symmetry with :func:`classification`; a class absent from both labels and
    predictions is left out either way, one with either but no hit scores 0.
    """
    from sklearn.metrics import f1_score

    y, p = np.asarray(labels), np.asarray(preds)
    if not len(y):
        return 0.0
    return float(f1_score(y, p, average="macro", labels=np.union1d(y, p), zero_division=0))


def _score(name: str, labels: Any, preds: Any, n_classes: int | None) -> float:
    if name in ("accuracy", "top1"):
        return accuracy(labels, preds)
    if name == "f1":
        return macro_f1(labels, preds, n_classes)
    raise ZooError(f"evaluation.metrics: '{name}' is not a classification metric: use accuracy, f1 or top1")


def classification(names: Sequence[str], labels: Sequence[int], preds: Sequence[int],
                   n_classes: int | None = None) -> dict[str, float]:
    """The requested classification metrics (``accuracy``, ``top1`` — the same thing for one label — ``f1``).

    Raises:
        ZooError: a metric that does not apply to classification.
    """
    return {name: _score(name, labels, preds, n_classes) for name in names}


def kfold(names: Sequence[str], labels: Sequence[int], preds: Sequence[int], k: int, seed: int = 0,
          n_classes: int | None = None) -> dict[str, dict[str, float]]:
    """Mean and spread of each metric over ``k`` disjoint folds of the evaluated test rows.

    This is no retraining: the model is fixed, its predictions on the test rows are shuffled with ``seed`` and cut
    into ``k`` folds, and each metric is computed per fold. The std (ddof=1) says how much the metric moves with
    the sample, i.e. how much of a gap between two variants is noise.

    Raises:
        ZooError: fewer rows than folds.
    """
    y, p = np.asarray(labels), np.asarray(preds)
    if len(y) < k:
        raise ZooError(f"evaluation.kfold: {k} folds need at least {k} test rows, there are {len(y)}: lower kfold")
    order = np.random.default_rng(seed).permutation(len(y))
    per_fold = [classification(names, y[idx], p[idx], n_classes) for idx in np.array_split(order, k)]
    return {name: {"mean": float(np.mean([f[name] for f in per_fold])),
                   "std": float(np.std([f[name] for f in per_fold], ddof=1)), "k": k}
            for name in names}


def roc_auc_interval(labels: Sequence[int], scores: Sequence[float], seed: int = 0,
                     resamples: int = RESAMPLES) -> dict[str, Any]:
    """ROC AUC of ``scores`` (higher: class 1) against binary ``labels``, with its 95% bootstrap interval over rows.

    Returns:
        the dict of :func:`interval` (``value``, ``low``, ``high``, ...).
    """
    from sklearn.metrics import roc_auc_score

    y, s = np.asarray(labels), np.asarray(scores, dtype=float)
    value = float(roc_auc_score(y, s))

    def stat(yy, ss):
        return float(roc_auc_score(yy, ss)) if len(np.unique(yy)) == 2 else np.nan

    low, high = value, value
    if len(y) > 2:
        from scipy.stats import bootstrap

        res = bootstrap((y, s), stat, paired=True, vectorized=False, n_resamples=resamples, confidence_level=LEVEL,
                        method="percentile", rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"value": value, "low": low, "high": high, "level": LEVEL, "resamples": resamples, "rows": len(y),
            "method": "percentile bootstrap over test rows (scipy.stats.bootstrap)"}


def ratio(metric: str, value: float, reference: float) -> float:
    """How much of the reference's quality a variant keeps: value/reference, or reference/value when lower is better.

    1.0 means equal, below 1.0 worse. A reference scoring 0 (accuracy) cannot be undercut, so the ratio is 1.0;
    a perplexity of 0 cannot occur.
    """
    num, den = (reference, value) if metric in LOWER_IS_BETTER else (value, reference)
    return float(num / den) if den else 1.0


# ---------------------------------------------------------------- intervals and paired comparisons


def _vector_stat(name: str):
    """The metric on many resamples at once (``axis``), for scipy's vectorized bootstrap; None if there is none.

    Each matches its scikit-learn point value on one sample (tests check it); macro F1 averages over the classes
    present in that resample's labels or predictions, as scikit-learn does.
    """
    if name in ("accuracy", "top1"):
        return lambda y, p, axis=-1: np.mean(y == p, axis=axis)
    if name == "f1":
        return _macro_f1_vec
    return None


def _macro_f1_vec(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    y, p = np.moveaxis(np.asarray(y), axis, -1), np.moveaxis(np.asarray(p), axis, -1)
    scores = []
    for c in np.union1d(np.unique(y), np.unique(p)):
        yc, pc = y == c, p == c
        tp = np.sum(yc & pc, axis=-1)
        denom = 2 * tp + np.sum(~yc & pc, axis=-1) + np.sum(yc & ~pc, axis=-1)
        scores.append(np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan))
    return np.nanmean(np.stack(scores), axis=0)


def _bootstrap(data: tuple, statistic, vectorized: bool, seed: int, resamples: int) -> tuple[float, float]:
    from scipy.stats import bootstrap

    res = bootstrap(data, statistic, paired=True, vectorized=vectorized, n_resamples=resamples,
                    confidence_level=LEVEL, method="percentile", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


def interval(name: str, labels: Sequence[int], preds: Sequence[int], n_classes: int | None = None, seed: int = 0,
             resamples: int = RESAMPLES) -> dict[str, Any]:
    """The 95% bootstrap interval of a per-row metric over the test rows.

    Returns:
        ``{"value", "low", "high", "level", "resamples", "rows", "method"}``.
    """
    y, p = np.asarray(labels), np.asarray(preds)
    value = _score(name, y, p, n_classes)
    vec = _vector_stat(name)
    stat = vec if vec else (lambda a, b: _score(name, a, b, n_classes))
    low, high = _bootstrap((y, p), stat, vec is not None, seed, resamples) if len(y) > 1 else (value, value)
    return {"value": value, "low": low, "high": high, "level": LEVEL, "resamples": resamples, "rows": len(y),
            "method": "percentile bootstrap over test rows (scipy.stats.bootstrap)"}


def compare(name: str, labels: Sequence[int], preds: Sequence[int], ref_preds: Sequence[int],
            n_classes: int | None = None, seed: int = 0, resamples: int = RESAMPLES) -> dict[str, Any]:
    """A variant against its reference on the same rows: paired bootstrap of the difference and of the ratio.

    Returns:
        ``{"value", "reference", "diff": {value, low, high}, "ratio": {value, low, high}, "agreement", "rows",
        "level", "resamples", "method"}``; ``agreement`` is the fraction of rows where both predict the same class.

    Raises:
        ZooError: the two prediction lists do not cover the same number of rows.
    """
    y, a, b = np.asarray(labels), np.asarray(preds), np.asarray(ref_preds)
    if not (len(y) == len(a) == len(b)):
        raise ZooError(f"paired comparison needs the same test rows: {len(a)} predictions against {len(b)} of the "
                       f"reference: re-evaluate both with `zoo eval --force`")
    lower = name in LOWER_IS_BETTER
    vec = _vector_stat(name)

    def pair(yy, aa, bb, axis=-1):
        if vec is not None:
            va, vb = vec(yy, aa, axis), vec(yy, bb, axis)
        else:
            va, vb = _score(name, yy, aa, n_classes), _score(name, yy, bb, n_classes)
        return va, vb

    def diff(yy, aa, bb, axis=-1):
        va, vb = pair(yy, aa, bb, axis)
        return np.asarray(va) - np.asarray(vb)

    def rat(yy, aa, bb, axis=-1):
        va, vb = (np.asarray(v, dtype=float) for v in pair(yy, aa, bb, axis))
        num, den = (vb, va) if lower else (va, vb)
        return np.where(den == 0, 1.0, num / np.where(den == 0, 1.0, den))

    value, reference = _score(name, y, a, n_classes), _score(name, y, b, n_classes)
    out: dict[str, Any] = {"value": value, "reference": reference, "rows": len(y), "level": LEVEL,
                           "resamples": resamples, "agreement": float(np.mean(a == b)) if len(a) else 1.0,
                           "method": "paired percentile bootstrap over test rows (scipy.stats.bootstrap)"}
    for key, fn, point in (("diff", diff, value - reference), ("ratio", rat, ratio(name, value, reference))):
        if len(y) > 1 and not np.array_equal(a, b):
            low, high = _bootstrap((y, a, b), fn, vec is not None, seed, resamples)
        else:  # identical predictions: every resample gives the same figure
            low = high = float(point)
        out[key] = {"value": float(point), "low": low, "high": high}
    return out


def verdict(low: float, high: float, min_ratio: float) -> str:
    """"pass" (lower bound ≥ min_ratio), "worse" (upper bound below it) or "not enough evidence" (it straddles)."""
    if low >= min_ratio:
        return "pass"
    if high < min_ratio:
        return "worse"
    return "not enough evidence"


def half_width(iv: dict[str, Any]) -> float:
    """Half the width of an interval dict (``low``/``high``)."""
    return (iv["high"] - iv["low"]) / 2
