"""COCO box metrics with pycocotools: mAP@0.5:0.95 and mAP@0.5, and a paired bootstrap over images.

One :class:`CocoEval` per (variant, test rows) runs COCOeval's per-image matching once; a resample of images is then
only a re-accumulation over the chosen images' cached matches (duplicates included), so a bootstrap of a few hundred
resamples costs seconds, and two variants resampled with the same image indices give a paired interval.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from zoo.families.object_detection.data import Sample
from zoo.families.object_detection.model import Detections

METRICS = ("map", "map50")  # registry names: mAP@0.5:0.95 and mAP@0.5


class CocoEval:
    """Ground truth and detections of the same images, matched once."""

    def __init__(self, samples: Sequence[Sample], detections: Sequence[Detections], n_classes: int):
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        images = [{"id": i, "width": s.width, "height": s.height} for i, s in enumerate(samples)]
        anns, dets = [], []
        for i, (s, d) in enumerate(zip(samples, detections, strict=True)):
            for box, c in zip(s.boxes, s.classes, strict=True):
                w, h = float(box[2] - box[0]), float(box[3] - box[1])
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0,
                             "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h})
            for box, score, c in zip(d.boxes, d.scores, d.classes, strict=True):
                dets.append({"image_id": i, "category_id": int(c), "score": float(score),
                             "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c} for c in range(n_classes)]}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            gt.createIndex()
            dt = gt.loadRes(dets) if dets else COCO()
            if not dets:
                dt.dataset = {"images": images, "annotations": [], "categories": gt.dataset["categories"]}
                dt.createIndex()
            self.ev = COCOeval(gt, dt, "bbox")
            self.ev.evaluate()
        self.n = n = len(samples)
        areas = len(self.ev.params.areaRng)
        # only the "all" area range is reported: keep its matches, so each resample accumulates a quarter as much
        self.cached = [e for b in range(len(self.ev.evalImgs) // n) if b % areas == 0
                       for e in self.ev.evalImgs[b * n : (b + 1) * n]]
        for p in (self.ev.params, self.ev._paramsEval):
            p.areaRng, p.areaRngLbl = p.areaRng[:1], p.areaRngLbl[:1]

    def scores(self, resample: np.ndarray | None = None) -> dict[str, float]:
        """mAP@0.5:0.95 and mAP@0.5 over all images, or over ``resample`` (image positions, repeats allowed)."""
        idx = np.arange(self.n) if resample is None else np.asarray(resample)
        precision = self.precision(idx)
        return {"map": _mean(precision), "map50": _mean(precision[0])}

    def reference_scores(self) -> dict[str, float]:
        """The same two numbers through pycocotools' own ``accumulate`` (all images); :meth:`scores` must agree."""
        self.ev.evalImgs = self.cached  # category-major, area "all" only, as params now say
        with contextlib.redirect_stdout(io.StringIO()):
            self.ev.accumulate()
        precision = self.ev.eval["precision"][:, :, :, 0, -1]  # T x R x K, area "all", maxDets 100
        return {"map": _mean(precision), "map50": _mean(precision[0])}

    def precision(self, idx: np.ndarray) -> np.ndarray:
        """COCOeval.accumulate's precision (T x R x K) for area "all" and 100 detections, over images ``idx``.

        The same steps as pycocotools (mergesort by score, cumulative TP/FP, the precision envelope, sampling at
        the 101 recall points), with the envelope as one ``np.maximum.accumulate`` instead of a Python loop: that
        loop is what makes a bootstrap of hundreds of resamples slow.
        """
        p = self.ev.params
        rec_thrs = np.asarray(p.recThrs)
        out = -np.ones((len(p.iouThrs), len(rec_thrs), len(p.catIds)))
        max_det = p.maxDets[-1]
        for k in range(len(p.catIds)):
            block = self.cached[k * self.n : (k + 1) * self.n]
            found = [block[i] for i in idx if block[i] is not None]
            if not found:
                continue
            gt_ignore = np.concatenate([e["gtIgnore"] for e in found])
            npig = np.count_nonzero(gt_ignore == 0)
            if npig == 0:
                continue
            det_scores = np.concatenate([e["dtScores"][:max_det] for e in found])
            order = np.argsort(-det_scores, kind="mergesort")
            matched = np.concatenate([e["dtMatches"][:, :max_det] for e in found], axis=1)[:, order]
            ignored = np.concatenate([e["dtIgnore"][:, :max_det] for e in found], axis=1)[:, order]
            tp = np.cumsum(np.logical_and(matched, ~ignored), axis=1, dtype=float)
            fp = np.cumsum(np.logical_and(~matched.astype(bool), ~ignored), axis=1, dtype=float)
            for t in range(tp.shape[0]):
                rc = tp[t] / npig
                pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
                pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
                pos = np.searchsorted(rc, rec_thrs, side="left")
                q = np.zeros(len(rec_thrs))
                valid = pos < len(pr)
                q[valid] = pr[pos[valid]]
                out[t, :, k] = q
        return out


def _mean(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else 0.0


def paired_interval(variant: CocoEval, reference: CocoEval, metric: str, resamples: int = 200, seed: int = 0,
                    confidence: float = 0.95) -> dict[str, float]:
    """Percentile bootstrap of variant/reference ``metric`` with both resampled over the same images."""
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(resamples):
        idx = rng.integers(0, variant.n, variant.n)
        ref = reference.scores(idx)[metric]
        ratios.append(variant.scores(idx)[metric] / ref if ref else 1.0)
    lo, hi = np.percentile(ratios, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100])
    point_ref = reference.scores()[metric]
    return {"ratio": variant.scores()[metric] / point_ref if point_ref else 1.0, "low": float(lo), "high": float(hi),
            "resamples": resamples, "images": variant.n, "confidence": confidence}


def interval(single: CocoEval, metric: str, resamples: int = 200, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap of one variant's ``metric`` over images (95%)."""
    rng = np.random.default_rng(seed)
    values = [single.scores(rng.integers(0, single.n, single.n))[metric] for _ in range(resamples)]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return {"low": float(lo), "high": float(hi), "resamples": resamples, "images": single.n}
