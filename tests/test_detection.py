"""The object-detection family (zoo/families/object_detection): COCO mAP, box decoding, the mirror resolver, and a
tiny detector built from a config going through build → evaluate → card → Space → push."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tiny_detection import NAMES, make_tiny_coco, make_tiny_detection_zoo, make_tiny_detector

from zoo.families.object_detection.data import read_split
from zoo.families.object_detection.metrics import CocoEval, paired_interval
from zoo.families.object_detection.model import Detections, Detector, nms


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_tiny_coco(tmp_path_factory.mktemp("coco") / "coco-tiny", train=4, val=16)


def _jittered(samples, seed: int, drop: float = 0.3) -> list[Detections]:
    """Ground truth moved a few pixels, some boxes dropped, random extra boxes and scores: a real-looking mix."""
    rng = np.random.default_rng(seed)
    out = []
    for s in samples:
        keep = rng.random(len(s.boxes)) > drop
        boxes = s.boxes[keep] + rng.normal(0, 2, (int(keep.sum()), 4)).astype(np.float32)
        extra = rng.uniform(0, 40, (3, 4)).astype(np.float32)
        extra[:, 2:] += extra[:, :2]
        out.append(Detections(np.concatenate([boxes, extra]), rng.random(len(boxes) + 3).astype(np.float32),
                              np.concatenate([s.classes[keep], rng.integers(0, len(NAMES), 3)])))
    return out


def test_ground_truth_as_detections_scores_one(coco):
    test = read_split(coco, "val2017", "dataset")
    perfect = [Detections(s.boxes, np.ones(len(s.boxes), np.float32), s.classes) for s in test]
    assert CocoEval(test, perfect, len(NAMES)).scores() == {"map": 1.0, "map50": 1.0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_accumulate_equals_pycocotools(coco, seed):
    test = read_split(coco, "val2017", "dataset")
    ev = CocoEval(test, _jittered(test, seed), len(NAMES))
    mine, theirs = ev.scores(), ev.reference_scores()
    assert 0 < mine["map"] < 1
    assert mine == pytest.approx(theirs, abs=1e-12)


def test_paired_interval_of_a_variant_against_itself_is_one(coco):
    test = read_split(coco, "val2017", "dataset")
    a = CocoEval(test, _jittered(test, 0), len(NAMES))
    b = CocoEval(test, _jittered(test, 0), len(NAMES))
    worse = CocoEval(test, _jittered(test, 0, drop=0.7), len(NAMES))
    same = paired_interval(a, b, "map", resamples=30)
    assert same["low"] == same["high"] == same["ratio"] == pytest.approx(1.0)
    lower = paired_interval(worse, a, "map", resamples=30)
    assert lower["low"] <= lower["ratio"] <= lower["high"] < 1.0


def test_zero_encoding_decodes_to_its_anchor_and_nms_drops_overlaps(tmp_path):
    folder = make_tiny_detector(tmp_path / "det")
    from zoo.families.object_detection.model import write_config
    from zoo.families.object_detection.techniques import coco91_map

    write_config(folder, input_size=32, score_threshold=0.01, iou_threshold=0.5, class_map=coco91_map(4),
                 label_names=NAMES)
    det = Detector(folder)
    enc, logits = np.zeros((16, 4), np.float32), np.full((16, 4), -9.0, np.float32)
    logits[5, 2] = 3.0  # anchor 5, model class 2 = COCO id 2 = dataset class 1
    found = det._post(enc, logits, 100, 50, 0.5)
    a = det.anchors[5]
    assert found.classes.tolist() == [1]
    assert found.boxes[0] == pytest.approx([a[1] * 100, a[0] * 50, a[3] * 100, a[2] * 50], abs=1e-4)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5, 10).tolist() == [0, 2]


def test_mirror_serves_a_source_by_sha256_only(tmp_path, coco, monkeypatch):
    from zoo.errors import ZooError
    from zoo.sources import resolve, sha256_tree

    mirror = tmp_path / "mirror"
    shutil.copytree(coco, mirror / "anything-named")
    sha = sha256_tree(coco)
    monkeypatch.setenv("ZOO_MIRRORS", str(mirror))
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    source = "git:https://example.invalid/coco128_yolo@6d6f7a0"
    assert resolve(source, sha, tmp_path, "dataset") == (mirror / "anything-named").resolve()
    (mirror / "anything-named" / "object_detection" / "config.yaml").write_text("names: {0: changed}\n")
    from zoo import sources

    sources._mirror_hash.cache_clear()
    with pytest.raises(ZooError, match="could not fetch"):  # a changed copy is never served; upstream is tried
        resolve(source, sha, tmp_path, "dataset")


@pytest.mark.slow
def test_tiny_detection_family_end_to_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from zoo.cli import app

    registry = make_tiny_detection_zoo(tmp_path / "project")
    monkeypatch.setenv("ZOO_THREADS", "1")
    run = CliRunner()
    for step in ("build", "eval", "card", "space", "push"):
        result = run.invoke(app, [step, "tiny-det", "--registry", str(registry)])
        assert result.exit_code == 0, f"zoo {step}: {result.output[-2000:]}"
    store = registry.parent / ".zoo"
    results = [json.loads(p.read_text()) for p in store.glob("artifacts/*.results.json")]
    assert len(results) == 5
    for r in results:
        assert set(r["metrics"]) == {"map", "map50"} and 0 <= r["metrics"]["map"] <= r["metrics"]["map50"] <= 1
    configs = {json.loads(p.read_text())["dtype"] for p in store.glob("artifacts/*/config.json")}
    assert configs == {"fp32", "fp16", "int8"}
    repo = store / "repos" / "tiny-det-int8-rpi5"
    assert {"model.onnx", "anchors.npy", "detector.py", "example.png"} <= {p.name for p in repo.iterdir()}
    assert "from detector import Detector" in (repo / "README.md").read_text()
    space = store / "spaces" / "tiny-det-demo"
    config = json.loads((space / "variants.json").read_text())
    assert [v["variant"] for v in config["variants"]] == ["fp32", "w16a16", "int8", "int8-entropy", "int8-rpi5"]
    assert config["max_side"] > 0 and (space / config["examples"][0]["file"]).is_file()
    assert "onnxruntime==" in (space / "requirements.txt").read_text()
    prov = json.loads((store / "repos" / "tiny-det-int8-rpi5" / "provenance.json").read_text())
    assert prov["quantization"]["preset"] == "arm64"
