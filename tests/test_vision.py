"""Vision family on tiny CNNs: BN folding, CLE, QAT export, PTQ w8a8 vs w8a16, and the technique builds."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_families import tiny_lite_arch

torch = pytest.importorskip("torch")
nn = torch.nn


def tiny_cnn(seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU6 ×3 (the middle one depthwise) + pool + linear, with BN statistics far from identity."""
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    )
    gen = torch.Generator().manual_seed(seed)
    for bn in (x for x in m if isinstance(x, nn.BatchNorm2d)):
        n = bn.num_features
        bn.weight.data = torch.exp(torch.empty(n).uniform_(-3, 2, generator=gen))  # spread channel ranges
        bn.bias.data = torch.randn(n, generator=gen) * 0.5
        bn.running_mean.data = torch.randn(n, generator=gen) * 0.3
        bn.running_var.data = torch.rand(n, generator=gen) + 0.5
    return m.eval()


def test_bn_fold_keeps_outputs_and_removes_every_bn():
    from zoo.families.image_classification.bn_fold import count_bn, fold_bn

    m = tiny_cnn()
    x = torch.randn(4, 3, 12, 12)
    before = m(x)
    assert fold_bn(m) == 3
    assert count_bn(m) == 0
    torch.testing.assert_close(m(x), before, atol=1e-4, rtol=1e-4)


def test_bn_fold_on_efficientnet_lite_keeps_outputs():
    from zoo.families.image_classification.bn_fold import count_bn, fold_bn
    from zoo.families.image_classification.model import EfficientNetLite

    m = EfficientNetLite(tiny_lite_arch()).eval()
    x = torch.randn(2, 3, 16, 16)
    before = m(x)
    assert fold_bn(m) == count_bn(EfficientNetLite(tiny_lite_arch()))
    assert count_bn(m) == 0
    torch.testing.assert_close(m(x), before, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("relu6", ["clip", "relu"])
def test_cle_keeps_function_and_reduces_range_spread(relu6):
    from zoo.families.image_classification.bn_fold import fold_bn
    from zoo.families.image_classification.cle import channel_range_spread, equalize

    m = tiny_cnn()
    fold_bn(m)
    convs = [x for x in m if isinstance(x, nn.Conv2d)]
    spread_before = [channel_range_spread(c) for c in convs[:2]]
    x = torch.rand(4, 3, 12, 12) * 0.1  # small inputs: no pre-activation reaches 6, so "relu" is exact too
    before = m(x)
    stats = equalize(m, relu6=relu6)
    assert stats["pairs"] == 2
    assert stats["spread_after"] < stats["spread_before"]
    for conv, b in zip(convs[:2], spread_before, strict=True):
        assert channel_range_spread(conv) < b
    torch.testing.assert_close(m(x), before, atol=1e-4, rtol=1e-4)


def test_cle_clip_is_exact_where_relu6_saturates():
    from zoo.families.image_classification.bn_fold import fold_bn
    from zoo.families.image_classification.cle import ChannelClip, equalize

    m = tiny_cnn()
    fold_bn(m)
    x = torch.randn(4, 3, 12, 12) * 20  # drives many channels past 6
    before = m(x)
    equalize(m, relu6="clip")
    assert any(isinstance(a, ChannelClip) for a in m)
    torch.testing.assert_close(m(x), before, atol=1e-3, rtol=1e-4)


def test_cle_refuses_unfolded_batch_norm():
    from zoo.errors import ZooError
    from zoo.families.image_classification.cle import equalize

    with pytest.raises(ZooError, match="bn_fold"):
        equalize(tiny_cnn())


def test_qat_step_runs_and_onnx_int8_export_agrees(tmp_path):
    from zoo.families.image_classification import export, qat
    from zoo.families.image_classification.bn_fold import fold_bn
    from zoo.families.image_classification.model import EfficientNetLite

    torch.manual_seed(0)
    m = EfficientNetLite(tiny_lite_arch()).eval()
    fold_bn(m)
    q = qat.prepare(m)
    x = torch.randn(32, 3, 16, 16)
    y = torch.randint(0, 3, (32,))
    qat.calibrate(q, [x[:16], x[16:]])
    q.train()
    opt = torch.optim.SGD(q.parameters(), lr=0.01)
    loss = nn.functional.cross_entropy(q(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    qat.freeze(q)
    with torch.no_grad():
        fake = q(x).numpy()
    path = export.export_onnx(q, 16, tmp_path / "model.onnx")
    assert export.fold_weight_quantizers(path) > 0
    ops = export.op_counts(path)
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    got = export.run(export.session(path), x.numpy())
    assert (got.argmax(-1) == fake.argmax(-1)).mean() >= 0.8


def _calibrated_int8(tmp_path: Path, activations: str) -> np.ndarray:
    from zoo.families.image_classification import export
    from zoo.families.image_classification.bn_fold import fold_bn

    m = tiny_cnn()
    fold_bn(m)
    gen = torch.Generator().manual_seed(1)
    calib = torch.rand(32, 3, 12, 12, generator=gen).numpy()
    fp32 = export.export_onnx(m, 12, tmp_path / "fp32.onnx")
    out = tmp_path / f"a{activations}.onnx"
    export.quantize_qdq(fp32, out, calib, per_channel=True, activations=activations, weights="int8",
                        method="minmax", percentile=99.99, reduce_range=False, weight_symmetric=True,
                        activation_symmetric=False)
    return out


def test_ptq_w8a8_and_w8a16_run_and_w8a16_is_closer(tmp_path):
    from zoo.families.image_classification import export

    x = torch.rand(64, 3, 12, 12, generator=torch.Generator().manual_seed(2)).numpy()
    reference = export.run(export.session(export.export_onnx(_folded(), 12, tmp_path / "ref.onnx")), x)
    err = {}
    for act in ("uint8", "uint16"):
        got = export.run(export.session(_calibrated_int8(tmp_path, act)), x)
        err[act] = float(np.abs(got - reference).mean())
    assert err["uint16"] <= err["uint8"]
    assert err["uint8"] < float(np.abs(reference).mean())  # w8a8 still tracks fp32


def _folded() -> nn.Module:
    from zoo.families.image_classification.bn_fold import fold_bn

    m = tiny_cnn()
    fold_bn(m)
    return m


# ---- the techniques end to end, on a tiny EfficientNet-Lite and a tiny image set --------------------------------


@pytest.fixture(scope="module")
def vision_project(tmp_path_factory) -> dict:
    """A tiny fp32 torch-image parent and an .npz image set (two classes: bright squares vs dark squares)."""
    from zoo.families.image_classification.model import EfficientNetLite, save_torch, write_config

    root = tmp_path_factory.mktemp("vision")
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 2
    images = rng.integers(0, 60, (120, 12, 12), dtype=np.uint8)
    images[labels == 1, 3:9, 3:9] += 180
    np.savez(root / "shapes.npz", images=images, labels=labels)
    torch.manual_seed(0)
    parent = root / "parent"
    parent.mkdir()
    arch = tiny_lite_arch(2)
    save_torch(EfficientNetLite(arch).eval(), parent)
    write_config(parent, arch, 16, ["dark", "bright"], [0.5] * 3, [0.5] * 3, "torch-image", "fp32")
    return {"root": root, "parent": parent}


def _ctx(project: dict, technique, params: dict, parent: Path, out: Path, kind: str):
    from zoo.registry.schema import Model, Target
    from zoo.techniques.base import BuildContext

    model = Model.model_validate({
        "task": "image-classification", "license": "apache-2.0", "base": {"source": "file:parent"},
        "dataset": {"source": "file:shapes.npz", "labels": ["dark", "bright"],
                    "split": {"train": 80, "test": 40, "calibration": 16}},
        "evaluation": {"metrics": ["top1"]}, "variants": {"v": {"kind": kind, "recipe": "r", "target": "t"}},
    })
    out.mkdir(parents=True)
    return BuildContext(model_id="m", variant_id="v", model=model, variant=model.variants["v"],
                        target=Target(device="cpu", isa="arm64"), recipe_name="r",
                        params=technique.params.model_validate(params), parent_dir=parent, parent_kind="fp32",
                        out_dir=out, splits=lambda: None, progress=None, log=lambda *_: None,
                        root=project["root"])


def test_vision_techniques_build_loadable_artifacts(vision_project, tmp_path):
    from zoo.families.image_classification import load_image_classifier
    from zoo.families.image_classification.techniques import VisionFinetune, VisionHalf, VisionPtq, VisionQat

    images = np.load(vision_project["root"] / "shapes.npz")["images"][:8]
    ft = VisionFinetune()
    extra = ft.build(_ctx(vision_project, ft, {"image_size": 16, "epochs": 1, "batch_size": 16},
                          vision_project["parent"], tmp_path / "fp32", "fp32"))
    assert extra["format"] == "torch-image" and extra["training"]["steps"] == 5
    fp32_dir = tmp_path / "fp32"
    builds = [
        (VisionHalf(), {}, "w16a16", "torch-image"),
        (VisionPtq(), {"cle": True, "calibration": {"samples": 16}}, "int8", "onnx-image"),
        (VisionPtq(), {"bn_fold": False, "activations": "uint16", "exclude": ["features.0"]}, "int8",
         "onnx-image"),
        (VisionQat(), {"epochs": 1, "batch_size": 16}, "qat", "onnx-image"),
    ]
    reference = load_image_classifier(fp32_dir).logits(images)
    assert reference.shape == (8, 2)
    for i, (tech, params, kind, fmt) in enumerate(builds):
        out = tmp_path / f"v{i}"
        extra = tech.build(_ctx(vision_project, tech, params, fp32_dir, out, kind))
        assert extra["format"] == fmt
        assert extra["label_names"] == ["dark", "bright"]
        clf = load_image_classifier(out)
        assert clf.runtime == "onnxruntime"
        assert clf.logits(images).shape == (8, 2)
        assert json.loads((out / "config.json").read_text())["format"] == fmt
    assert extra["quantization"]["preset"]["isa"] == "arm64"  # the target's isa picks the preset
    assert load_image_classifier(tmp_path / "v3" / "torch").runtime == "torch"


def test_exclude_keeps_named_layers_in_float_and_rejects_unknown_names(tmp_path):
    import onnx

    from zoo.errors import ZooError
    from zoo.families.image_classification import export
    from zoo.families.image_classification.model import EfficientNetLite

    m = EfficientNetLite(tiny_lite_arch()).eval()
    graph = onnx.load(str(export.export_onnx(m, 16, tmp_path / "m.onnx"))).graph
    nodes = export.nodes_of_modules(graph, ["features.1.layers.0.conv", "classifier"])
    assert {n.split("/")[-1] for n in nodes} == {"Conv", "Gemm"} and len(nodes) == 2
    with pytest.raises(ZooError, match="features.0.conv"):
        export.nodes_of_modules(graph, ["features.9.conv"])


def test_simplify_keeps_unfolded_batch_norm_only_when_asked(tmp_path):
    from zoo.families.image_classification import export
    from zoo.families.image_classification.bn_fold import unfold_bn

    m = tiny_cnn()
    unfold_bn(m)
    src = export.export_onnx(m, 12, tmp_path / "m.onnx")
    kept = export.op_counts(export.simplify(src, tmp_path / "kept.onnx", keep_mul_add=True))
    fused = export.op_counts(export.simplify(src, tmp_path / "fused.onnx"))
    assert kept.get("Mul") == 3 and "Mul" not in fused


def test_recalibrate_bn_matches_the_data_statistics():
    from zoo.families.image_classification.train import recalibrate_bn

    conv, bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
    m = nn.Sequential(conv, bn).eval()
    x = torch.randn(64, 3, 5, 5) * 3 + 1
    assert recalibrate_bn(m, x, batch_size=16) == 1
    with torch.no_grad():
        y = conv(x)
    torch.testing.assert_close(bn.running_mean, y.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert not m.training and bn.momentum == 0.1


def test_ptq_params_refuse_cle_without_fold():
    from pydantic import ValidationError

    from zoo.families.image_classification.techniques import PtqParams

    with pytest.raises(ValidationError, match="bn_fold"):
        PtqParams(cle=True, bn_fold=False)


def test_image_splits_are_deterministic_and_disjoint(vision_project):
    from zoo.families.image_classification.data import load_image_splits
    from zoo.registry.schema import Dataset

    ds = Dataset(source="file:shapes.npz", split={"train": 80, "test": 40, "calibration": 16, "seed": 3})
    a = load_image_splits(ds, vision_project["root"], "d")
    b = load_image_splits(copy.deepcopy(ds), vision_project["root"], "d")
    assert a.train.indices == b.train.indices
    assert not set(a.train.indices) & set(a.test.indices)
    assert a.calibration.indices == a.train.indices[:16]
    assert a.train.images.shape[1:] == (12, 12, 3) and a.train.images.dtype == np.uint8
