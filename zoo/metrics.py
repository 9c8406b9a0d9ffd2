"""Task metrics over predictions, k-fold spread over the test rows, and the gate ratio (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoo.errors import ZooError

LOWER_IS_BETTER = frozenset({"perplexity"})
CLASSIFICATION = frozenset({"accuracy", "f1", "top1"})


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Fraction of rows whose prediction equals the label."""
    y, p = np.asarray(labels), np.asarray(preds)
    return float((y == p).mean()) if len(y) else 0.0


def macro_f1(labels: Sequence[int], preds: Sequence[int], n_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in labels or predictions (sklearn's default).

    A class with no true and no predicted rows is left out; one with either but no hit scores 0.
    """
    y, p = np.asarray(labels), np.asarray(preds)
    classes = range(n_classes) if n_classes else np.union1d(y, p)
    scores = []
    for c in classes:
        tp = int(((y == c) & (p == c)).sum())
        fp = int(((y != c) & (p == c)).sum())
        fn = int(((y == c) & (p != c)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def classification(names: Sequence[str], labels: Sequence[int], preds: Sequence[int],
                   n_classes: int | None = None) -> dict[str, float]:
    """The requested classification metrics (``accuracy``, ``top1`` — the same thing for one label — ``f1``).

    Raises:
        ZooError: a metric that does not apply to classification.
    """
    out = {}
    for name in names:
        if name in ("accuracy", "top1"):
            out[name] = accuracy(labels, preds)
        elif name == "f1":
            out[name] = macro_f1(labels, preds, n_classes)
        else:
            raise ZooError(f"evaluation.metrics: '{name}' is not a classification metric: use accuracy, f1 or top1")
    return out


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


def ratio(metric: str, value: float, reference: float) -> float:
    """How much of the reference's quality a variant keeps: value/reference, or reference/value when lower is better.

    1.0 means equal, below 1.0 worse. A reference scoring 0 (accuracy) cannot be undercut, so the ratio is 1.0;
    a perplexity of 0 cannot occur.
    """
    num, den = (reference, value) if metric in LOWER_IS_BETTER else (value, reference)
    return float(num / den) if den else 1.0
