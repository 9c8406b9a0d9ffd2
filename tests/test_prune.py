"""The prune technique on a tiny BERT classifier and a tiny EfficientNet-Lite: sparsity reached, models still run,
structured pruning shrinks the parameter count, and artifacts reload."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _ctx(tmp_path: Path, params: dict, parent: Path, task: str, splits=None, dataset: dict | None = None,
         root: Path | None = None):
    from zoo.registry.schema import Model, Target
    from zoo.techniques.base import BuildContext
    from zoo.techniques.prune import Prune

    model = Model.model_validate({
        "task": task, "license": "apache-2.0", "base": {"source": "file:x"},
        "dataset": dataset or {"source": "file:x"},
        "evaluation": {"metrics": ["top1" if task == "image-classification" else "accuracy"]},
        "variants": {"p": {"kind": "pruned", "recipe": "r", "target": "t"}},
    })
    out = tmp_path / "out"
    out.mkdir()
    return BuildContext(model_id="m", variant_id="p", model=model, variant=model.variants["p"],
                        target=Target(device="cpu"), recipe_name="r",
                        params=Prune.params.model_validate(params), parent_dir=parent, parent_kind="fp32",
                        out_dir=out, splits=lambda: splits, progress=None, log=lambda *_: None,
                        root=root or tmp_path)


@pytest.fixture(scope="module")
def bert_parent(tmp_path_factory) -> Path:
    from tiny import make_tiny_bert
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = make_tiny_bert(tmp_path_factory.mktemp("bert") / "base")
    dest = base.parent / "fp32"
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(base).save_pretrained(dest)
    return dest


TEXT_SPLITS = SimpleNamespace(label_names=["rotten", "fresh"])


def _bert_logits(path: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return model(**tok(["the film was great", "dull plot"], return_tensors="pt", padding=True)).logits, model


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_reaches_requested_sparsity_on_bert(bert_parent, tmp_path, scope):
    from zoo.techniques.prune import Prune

    extra = Prune().build(_ctx(tmp_path, {"amount": 0.4, "scope": scope}, bert_parent, "text-classification",
                               TEXT_SPLITS))
    assert extra["format"] == "transformers" and extra["label_names"] == ["rotten", "fresh"]
    assert extra["pruning"]["sparsity"]["sparsity"] == pytest.approx(0.4, abs=0.01)
    logits, model = _bert_logits(tmp_path / "out")
    assert torch.isfinite(logits).all()
    dense = model.bert.encoder.layer[0].intermediate.dense.weight
    if scope == "layer":
        assert float((dense == 0).float().mean()) == pytest.approx(0.4, abs=0.01)  # counted on the reloaded model
    assert float((model.classifier.weight == 0).float().mean()) < 0.1  # the head is kept


@pytest.mark.xfail(strict=True, reason="transformers 5 removed PreTrainedModel.prune_heads, which l1-structured head "
                   "pruning of text encoders uses; it needs its own implementation (open)")
def test_structured_heads_shrink_bert_and_reload(bert_parent, tmp_path):
    from zoo.techniques.prune import Prune

    extra = Prune().build(_ctx(tmp_path, {"method": "l1-structured", "amount": 0.5}, bert_parent,
                               "text-classification", TEXT_SPLITS))
    assert extra["params_count"] < extra["parent_params"]
    assert all(len(h) == 1 for h in extra["pruning"]["heads_removed"].values())  # 1 of 2 heads per layer
    logits, model = _bert_logits(tmp_path / "out")
    assert model.config.pruned_heads and torch.isfinite(logits).all()
    assert sum(p.numel() for p in model.parameters()) == extra["params_count"]


@pytest.fixture(scope="module")
def vision_parent(tmp_path_factory) -> Path:
    from zoo.families.image_classification.model import EfficientNetLite, lite0_arch, save_torch, write_config

    root = tmp_path_factory.mktemp("vision")
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    images = rng.integers(0, 255, (60, 12, 12), dtype=np.uint8)
    np.savez(root / "set.npz", images=images, labels=labels)
    torch.manual_seed(0)
    arch = lite0_arch(2, stages=[(1, 3, 1, 1, 8), (2, 3, 2, 4, 12)], stem=8, head=32)
    parent = root / "fp32"
    parent.mkdir()
    save_torch(EfficientNetLite(arch).eval(), parent)
    write_config(parent, arch, 16, ["a", "b"], [0.5] * 3, [0.5] * 3, "torch-image", "fp32")
    return parent


VISION_DATA = {"source": "file:set.npz", "split": {"train": 32, "test": 20, "calibration": 8}}


def test_magnitude_with_finetune_keeps_zeros_on_vision(vision_parent, tmp_path):
    from zoo.families.image_classification import load_image_classifier
    from zoo.families.image_classification.model import load_torch
    from zoo.techniques.prune import Prune

    extra = Prune().build(_ctx(tmp_path, {"amount": 0.6, "epochs": 1, "batch_size": 16}, vision_parent,
                               "image-classification", dataset=VISION_DATA, root=vision_parent.parent))
    assert extra["pruning"]["training"]["steps"] == 2
    model, _ = load_torch(tmp_path / "out")
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    zeros = sum(int((w == 0).sum()) for w in convs)
    assert zeros / sum(w.numel() for w in convs) >= 0.55  # masks held through fine-tuning (head kept dense)
    assert extra["pruning"]["sparsity"]["sparsity"] == pytest.approx(0.6, abs=0.01)
    images = np.zeros((3, 12, 12, 3), np.uint8)
    assert load_image_classifier(tmp_path / "out").logits(images).shape == (3, 2)


def test_structured_channels_shrink_vision_model(vision_parent, tmp_path):
    from zoo.families.image_classification import load_image_classifier
    from zoo.techniques.prune import Prune

    extra = Prune().build(_ctx(tmp_path, {"method": "l1-structured", "amount": 0.5}, vision_parent,
                               "image-classification", dataset=VISION_DATA, root=vision_parent.parent))
    assert extra["params_count"] < extra["parent_params"]
    assert extra["pruning"]["hidden"][1:] == [16, 24]  # 32 → 16 and 48 → 24; the block without expansion is kept
    clf = load_image_classifier(tmp_path / "out")
    assert clf.logits(np.zeros((2, 12, 12, 3), np.uint8)).shape == (2, 2)


def test_structured_refuses_models_without_heads(tmp_path):
    from zoo.errors import ZooError
    from zoo.techniques.prune import prune_heads_l1

    with pytest.raises(ZooError, match="magnitude"):
        prune_heads_l1(torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.5)
