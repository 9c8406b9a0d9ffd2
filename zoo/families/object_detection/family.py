"""Object detection: coco128 splits, COCO mAP with bootstrap intervals, timed detection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.families.base import Family, PerfModel, Scores
from zoo.registry.schema import Model

EVAL_BATCH = 16  # images per forward pass when computing metrics
BOOTSTRAP = 200  # image resamples behind each recorded interval


class ObjectDetection(Family):
    task = "object-detection"
    formats = ("onnx-detector",)
    # hooks the card and Space stages ask for (today's smallest step toward one Family interface)
    metrics = ("map", "map50")
    example_unit = "images"
    example_text = "a val2017 image from coco128"

    def techniques(self) -> list[Any]:
        from zoo.families.object_detection.techniques import DetectionConvert, DetectionHalf, DetectionPtq

        return [DetectionConvert(), DetectionHalf(), DetectionPtq()]

    def usage_names(self, node: Any, fmt: str, art: Path | None, root: str | None) -> list[str]:
        return ["onnx-detector"]

    def snippet_values(self) -> dict[str, Any]:
        from zoo.families.object_detection.publish import EXAMPLE_PNG

        return {"example_png": EXAMPLE_PNG}

    def perf_input(self, seq_len: int, results: list[dict[str, Any]]) -> str:
        sizes = sorted({(r.get("perf") or {}).get("image_size") for r in results} - {None})
        return f"{'/'.join(map(str, sizes))} px images" if sizes else "images"

    def load_lines(self, folder: Path, fmt: str | None) -> list[str]:
        import json

        return ["import onnxruntime as ort",
                f'session = ort.InferenceSession({json.dumps(str(folder / "model.onnx"))}, '
                'providers=["CPUExecutionProvider"])  # pre- and post-processing: detector.py in the repo']

    def stage_card_files(self, loaded: Any, node: Any, art: Path, out: Path) -> None:
        from zoo.families.object_detection.publish import stage_card_files

        stage_card_files(loaded, node, art, out)

    def write_space(self, loaded: Any, store: Any, model_id: str, specs: list, table: dict, left_out: list) -> Path:
        from zoo.families.object_detection.publish import write_space

        return write_space(loaded, store, model_id, specs, table, left_out)

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        from zoo.families.object_detection.data import load_detection_splits
        from zoo.sources import resolve

        ds = model.dataset
        folder = resolve(ds.source, ds.sha256, root, f"{field}.source", ds.revision)
        sp = ds.split
        return load_detection_splits(folder, ds.source, ds.sha256, sp.train, sp.test, sp.calibration, sp.seed, field)

    def test_rows(self, model: Model, root: Path, field: str) -> Any:
        from zoo.data import load_splits
        from zoo.families.base import seeded_subset

        test = load_splits(model, root, field).test
        keep = seeded_subset(len(test), model.evaluation.samples, model.evaluation.seed)
        return test if keep is None else [test[i] for i in keep]

    def evaluate(self, artifact_dir: Path, model: Model, root: Path, field: str, device: str, key: str) -> Scores:
        from zoo.data import load_splits
        from zoo.families.object_detection.metrics import CocoEval, interval

        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        dets = detect_all(artifact_dir, rows)
        coco = CocoEval(rows, dets, len(splits.label_names))
        scores = coco.scores()
        names = list(model.evaluation.metrics)
        intervals = {m: interval(coco, m, BOOTSTRAP, model.evaluation.seed) for m in names}
        test = {**splits.describe("test"), "samples": len(rows)}
        return Scores({m: scores[m] for m in names}, len(rows), test, None,
                      {"interval95": intervals, "runtime": "onnxruntime", "boxes": int(sum(len(d.boxes)
                                                                                          for d in dets))})

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        import numpy as np

        from zoo.families.object_detection.model import Detector
        from zoo.formats import onnx_params, read_provenance, threads

        det = Detector(artifact_dir, threads())
        rng = np.random.default_rng(0)

        def runner(n: int):
            batch = det.preprocess(list(rng.integers(0, 256, (n, 480, 640, 3), dtype=np.uint8)))
            return lambda: det.raw(batch)

        dtype = read_provenance(artifact_dir).get("dtype") or det.config.get("dtype", "fp32")
        return PerfModel("onnxruntime", dtype, onnx_params(artifact_dir / "model.onnx"), runner,
                         f"the network on float {det.size}x{det.size}x3 images already resized and scaled "
                         "(box decoding and NMS not included)", {"image_size": det.size})

    def examples(self, model: Model, root: Path, field: str, n: int) -> list[Any]:
        """Up to ``n`` test images (uint8 HxWx3), those with the most objects first."""
        from zoo.data import load_splits

        test = load_splits(model, root, field).test
        ranked = sorted(test, key=lambda s: -len(s.boxes))
        return [s.image() for s in ranked[:n]]


def detect_all(artifact_dir: Path, rows: list, batch: int = EVAL_BATCH) -> list:
    """Every row's detections, kept under ``<cache>/detections/`` per artifact and rows, so the family report
    (paired bootstrap over the same images) does not run the networks a second time."""
    import hashlib
    import pickle

    from zoo.families.object_detection.model import Detector
    from zoo.formats import threads
    from zoo.sources import cache_dir

    ids = hashlib.sha256(",".join(str(s.path) for s in rows).encode()).hexdigest()[:16]
    cached = cache_dir() / "detections" / f"{artifact_dir.resolve().name}-{ids}.pkl"
    if cached.is_file():
        return pickle.loads(cached.read_bytes())
    det = Detector(artifact_dir, threads())
    out = []
    for i in range(0, len(rows), batch):
        out.extend(det.detect([s.image() for s in rows[i : i + batch]]))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(out))
    tmp.replace(cached)
    return out


FAMILY = ObjectDetection()
