"""Intervals and the generation gate for text generation, from the per-row values lm-eval gives.

Every interval is a 95% percentile bootstrap over rows (``scipy.stats.bootstrap``, fixed seed). Comparisons with the
reference variant are paired: the same passages, cloze items and openings, resampled together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zoo.errors import ZooError

RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Callable[..., float]) -> tuple[float, float]:
    from scipy import stats

    if len(data[0]) < 2:
        value = float(statistic(*data))
        return value, value
    if all(np.ptp(d) == 0 for d in data):  # every row equal: scipy's BCa would fail; the interval is the point
        value = float(statistic(*data))
        return value, value
    res = stats.bootstrap(data, statistic, paired=True, vectorized=False, n_resamples=RESAMPLES,
                          confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(SEED))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return lo, hi


def mean_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean of per-row ``values`` with its 95% interval: ``{"value", "ci": [lo, hi], "n"}``."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ZooError("a metric has no row to average: check the dataset split")
    lo, hi = _bootstrap((x,), lambda a: float(np.mean(a)))
    return {"value": float(x.mean()), "ci": [lo, hi], "n": len(x)}


def perplexity_interval(loglik: Sequence[float], tokens: Sequence[int]) -> dict[str, Any]:
    """Token perplexity exp(−Σ ll / Σ tokens) of passages, with its 95% interval over passages."""
    ll, tok = np.asarray(loglik, dtype=float), np.asarray(tokens, dtype=float)

    def ppl(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(a.sum()) / float(b.sum()))

    lo, hi = _bootstrap((ll, tok), ppl)
    return {"value": ppl(ll, tok), "ci": [lo, hi], "n": len(ll)}


def perplexity_ratio_interval(ref_loglik: Sequence[float], loglik: Sequence[float],
                              tokens: Sequence[int]) -> dict[str, Any]:
    """Reference perplexity over the variant's on the same passages (above 1: the variant is better), paired."""
    r, v, t = (np.asarray(x, dtype=float) for x in (ref_loglik, loglik, tokens))
    if not len(r) == len(v) == len(t):
        raise ZooError("perplexity ratio: the variant and its reference scored different passages: re-evaluate both")

    def ratio(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return math.exp((float(b.sum()) - float(a.sum())) / float(c.sum()))

    lo, hi = _bootstrap((r, v, t), ratio)
    return {"value": ratio(r, v, t), "ci": [lo, hi], "n": len(r)}


def paired_difference(values: Sequence[float], reference: Sequence[float]) -> dict[str, Any]:
    """Mean of ``values − reference`` row by row, with its paired 95% interval."""
    v, r = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if len(v) != len(r):
        raise ZooError("paired difference: the variant and its reference scored different rows: re-evaluate both")
    lo, hi = _bootstrap((v, r), lambda a, b: float(np.mean(a - b)))
    return {"value": float(np.mean(v - r)), "ci": [lo, hi], "n": len(v)}


def margin_check(name: str, diff: dict[str, Any], margin: float, what: str) -> dict[str, Any]:
    """A non-inferiority check on a lower-is-better difference: pass when the interval's upper end is within
    ``margin``, fail when its lower end is past it, "not enough evidence" (not passed) when it straddles it."""
    lo, hi = diff["ci"]
    verdict = "pass" if hi <= margin else "fail" if lo > margin else "not enough evidence"
    return {"check": name, "what": what, "value": diff["value"], "ci": diff["ci"], "n": diff["n"],
            "max": margin, "verdict": verdict, "passed": verdict == "pass"}
