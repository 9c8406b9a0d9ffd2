"""Image-classification techniques: fine-tune (fp32), half (w16a16), static int8 PTQ with BN folding and CLE as
recipe steps (w8a8 or w8a16), and QAT exported to an int8 QDQ graph.

They read images through ``.data`` (the model's ``dataset`` with its ``split``) rather than
``ctx.splits()``, which reads text tables, and write a "torch-image" (config.json + model.safetensors) or
"onnx-image" (config.json + model.onnx) folder that ``zoo.families.image_classification.load_image_classifier`` loads.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from zoo.errors import ZooError
from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique

CHECK_ROWS = 256  # test images on which each variant is compared with its parent
IMAGE_TASKS = frozenset({"image-classification"})


class Calibration(Params):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    samples: int = Field(128, ge=1, le=100_000)  # images from the train split (dataset.split.calibration caps it)
    percentile: float = Field(99.999, gt=90, le=100)


class FinetuneParams(Params):
    image_size: int = Field(64, ge=16, le=512)  # square input side; MNIST digits are upscaled to it
    epochs: float = Field(2.0, gt=0, le=100)
    lr: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(32, ge=1, le=1024)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    bn_momentum: float = Field(0.1, gt=0, le=1)  # BN statistics adapt to the new domain within a short run


class HalfParams(Params):
    dtype: Literal["fp16", "bf16"] = "fp16"
    onnx: bool = True  # also write model.onnx in fp16 (bf16 has no ONNX Runtime CPU kernels)


class PtqParams(Params):
    bn_fold: bool = True  # false: BN kept as separate per-channel Mul/Add, each quantized on its own
    cle: bool = False  # cross-layer equalization after folding
    cle_relu6: Literal["clip", "relu"] = "clip"  # clip: exact per-channel bound; relu: AIMET's ReLU6 → ReLU
    per_channel: bool = True
    activations: Literal["int8", "uint8", "int16", "uint16"] = "uint8"  # int16/uint16: w8a16
    weights: Literal["int8", "uint8"] = "int8"
    isa: Literal["auto", "avx2", "avx512", "avx512-vnni", "amx", "arm64", "neon"] = "auto"  # auto: the target's
    calibration: Calibration = Calibration()
    # Torch module names kept in float, e.g. [features.0] (the stem: pad, conv and act). Exclude whole units: ONNX
    # Runtime 1.31 miscomputes a float Conv fed by a quantized Pad (measured: features.0.conv alone → 14% top-1).
    exclude: list[str] = []

    @model_validator(mode="after")
    def _cle_needs_fold(self) -> PtqParams:
        if self.cle and not self.bn_fold:
            raise ValueError("cle: true needs bn_fold: true (a batch norm between two convs undoes the scaling)")
        return self


class QatParams(Params):
    epochs: float = Field(1.0, gt=0, le=100)
    lr: float = Field(1e-4, gt=0, le=1)
    batch_size: int = Field(32, ge=1, le=1024)
    weight_decay: float = Field(0.0, ge=0, le=1)
    isa: Literal["auto", "avx2", "avx512", "avx512-vnni", "amx", "arm64", "neon"] = "auto"  # recorded preset
    calibration: Calibration = Calibration()  # initial activation ranges, before training


def _splits(ctx: BuildContext) -> Any:
    from zoo.families.image_classification.data import load_image_splits

    return load_image_splits(ctx.model.dataset, ctx.root, f"models.{ctx.model_id}.dataset")


def _parent(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    """The parent's fp32 module and config; a torch-image folder is required (ONNX-only parents cannot train)."""
    from zoo.families.image_classification.model import load_torch

    if ctx.parent_dir.is_file():
        raise ZooError(f"{ctx.model_id}:{ctx.variant_id}: from: base gives ImageNet weights without a head for this "
                       "dataset: use from: <the fp32 variant>")
    return load_torch(ctx.parent_dir)


def _key(ctx: BuildContext) -> str:
    return f"{ctx.model_id}:{ctx.variant_id}"


def _test_x(splits: Any, config: dict[str, Any]) -> tuple[Any, Any]:
    from zoo.families.image_classification.model import preprocess

    test = splits.test.head(CHECK_ROWS)
    return preprocess(test.images, config["image_size"], config["mean"], config["std"]), test.labels


def _extra(fmt: str, dtype: str, config: dict[str, Any], params: int, **facts: Any) -> dict[str, Any]:
    return {"format": fmt, "dtype": dtype, "label_names": config["label_names"], "max_length": None,
            "image_size": config["image_size"], "params_count": params, **facts}


class VisionFinetune(Technique):
    name = "vision-finetune"
    kinds = frozenset({Kind.fp32})
    tasks = IMAGE_TASKS
    params = FinetuneParams
    formats = ("torch-image",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch

        from zoo.families.image_classification import model as vm
        from zoo.families.image_classification import train
        from zoo.techniques._train import seed_everything, set_threads

        p: FinetuneParams = ctx.params  # type: ignore[assignment]
        set_threads()
        seed_everything(p.seed)
        splits = _splits(ctx)
        model, parent_cfg = vm.load_model(ctx.parent_dir)
        arch = dict(model.arch)
        mean, std = (parent_cfg["mean"], parent_cfg["std"]) if parent_cfg else (vm.LITE_MEAN, vm.LITE_STD)
        classes = len(splits.label_names)
        if arch["num_classes"] != classes:
            model.classifier = torch.nn.Linear(model.classifier.in_features, classes)
            arch["num_classes"] = classes
            model.arch = arch
        x = vm.preprocess(splits.train.images, p.image_size, mean, std)
        y = torch.from_numpy(splits.train.labels)
        train.set_bn_momentum(model, p.bn_momentum)
        ctx.log(f"{_key(ctx)}: fine-tuning on {len(x)} images at {p.image_size} px")
        training = train.fit(model, x, y, p.epochs, p.lr, p.batch_size, p.weight_decay, p.seed, ctx.progress,
                             f"{_key(ctx)} train")
        train.set_bn_momentum(model, 0.01)
        vm.save_torch(model, ctx.out_dir)
        config = vm.write_config(ctx.out_dir, arch, p.image_size, splits.label_names, mean, std, "torch-image",
                                 "fp32")
        tx, ty = _test_x(splits, config)
        check = {"rows": len(ty), "top1": train.top1(train.predict(model, tx), ty)}
        ctx.log(f"{_key(ctx)}: top-1 {check['top1']:.1%} on {check['rows']} test images")
        return _extra("torch-image", "fp32", config, vm.params_count(model), training=training, check=check,
                      train=splits.describe("train"))


class VisionHalf(Technique):
    name = "vision-half"
    kinds = frozenset({Kind.w16a16})
    tasks = IMAGE_TASKS
    params = HalfParams
    formats = ("torch-image",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import numpy as np
        import torch

        from zoo.families.image_classification import export, train
        from zoo.families.image_classification import model as vm
        from zoo.techniques._train import set_threads

        p: HalfParams = ctx.params  # type: ignore[assignment]
        set_threads()
        model, config = _parent(ctx)
        splits = _splits(ctx)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[p.dtype]
        vm.save_torch(model, ctx.out_dir, dtype)
        config = vm.write_config(ctx.out_dir, config["architecture"], config["image_size"], config["label_names"],
                                 config["mean"], config["std"], "torch-image", p.dtype)
        tx, _ = _test_x(splits, config)
        reference = train.predict(model, tx)
        facts: dict[str, Any] = {}
        if p.onnx:
            with tempfile.TemporaryDirectory(prefix="zoo-vision-") as tmp:
                fp32 = export.export_onnx(model, config["image_size"], Path(tmp) / "fp32.onnx")
                export.to_fp16(fp32, ctx.out_dir / vm.ONNX)
            got = export.run(export.session(ctx.out_dir / vm.ONNX), tx.numpy())
            if not np.isfinite(got).all():
                raise ZooError(f"{_key(ctx)}: the fp16 ONNX graph gives non-finite logits: set onnx: false")
            facts["onnx"] = {"path": vm.ONNX, "dtype": "fp16", "opset": export.OPSET,
                             "check": {"rows": len(tx), **train.agreement(reference, got)}}
        return _extra("torch-image", p.dtype, config, vm.params_count(model), **facts)


def _preset(isa: str, target_isa: str | None) -> Any:
    from zoo.techniques.int8 import preset_for

    return preset_for(isa, target_isa)


class VisionPtq(Technique):
    name = "vision-ptq"
    kinds = frozenset({Kind.int8})
    tasks = IMAGE_TASKS
    params = PtqParams
    formats = ("onnx-image",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import copy

        from zoo.families.image_classification import bn_fold, cle, export, train
        from zoo.families.image_classification import model as vm
        from zoo.techniques._train import set_threads

        p: PtqParams = ctx.params  # type: ignore[assignment]
        set_threads()
        preset = _preset(p.isa, ctx.target.isa)
        parent, config = _parent(ctx)
        splits = _splits(ctx)
        tx, ty = _test_x(splits, config)
        reference = train.predict(parent, tx)
        model = copy.deepcopy(parent)
        steps: dict[str, Any] = {}
        if p.bn_fold:
            steps["bn_fold"] = {"folded": bn_fold.fold_bn(model)}
        else:
            steps["bn_fold"] = {"folded": 0, "kept_as_mul_add": bn_fold.unfold_bn(model)}
        if p.cle:
            steps["cle"] = cle.equalize(model, p.cle_relu6)
            ctx.log(f"{_key(ctx)}: CLE on {steps['cle']['pairs']} conv pairs: channel range spread "
                    f"{steps['cle']['spread_before']} → {steps['cle']['spread_after']}")
        steps["max_abs_diff_after_steps"] = round(float(abs(train.predict(model, tx) - reference).max()), 5)
        calib = splits.calibration.head(p.calibration.samples)
        if len(calib) < p.calibration.samples:
            ctx.log(f"{_key(ctx)}: only {len(calib)} calibration images (dataset.split.calibration); using them all")
        cx = vm.preprocess(calib.images, config["image_size"], config["mean"], config["std"]).numpy()
        out = ctx.out_dir / vm.ONNX
        with tempfile.TemporaryDirectory(prefix="zoo-vision-") as tmp:
            fp32 = export.export_onnx(model, config["image_size"], Path(tmp) / "fp32.onnx")
            fp32 = export.simplify(fp32, Path(tmp) / "simple.onnx", keep_mul_add=not p.bn_fold)
            ctx.log(f"{_key(ctx)}: static QDQ w8a{p.activations[-1] if p.activations.endswith('8') else '16'}, "
                    f"{p.calibration.method} calibration on {len(cx)} images, {preset.isa} preset")
            export.quantize_qdq(fp32, out, cx, per_channel=p.per_channel, activations=p.activations,
                                weights=p.weights, method=p.calibration.method, percentile=p.calibration.percentile,
                                reduce_range=preset.reduce_range, weight_symmetric=preset.weight_symmetric,
                                activation_symmetric=preset.activation_symmetric, exclude=p.exclude)
        got = export.run(export.session(out), tx.numpy())
        check = {"rows": len(ty), **train.agreement(reference, got), "top1": train.top1(got, ty),
                 "parent_top1": train.top1(reference, ty)}
        ctx.log(f"{_key(ctx)}: int8 top-1 {check['top1']:.1%} vs fp32 {check['parent_top1']:.1%} "
                f"on {check['rows']} test images")
        config = vm.write_config(ctx.out_dir, config["architecture"], config["image_size"], config["label_names"],
                                 config["mean"], config["std"], "onnx-image", "int8")
        calibration = {**splits.describe("calibration"), "method": p.calibration.method, "samples": len(cx)}
        if p.calibration.method == "percentile":
            calibration["percentile"] = p.calibration.percentile
        return _extra("onnx-image", "int8", config, export.initializer_elements(out), calibration=calibration,
                      steps=steps, quantization={
                          "mode": "static", "format": "QDQ", "per_channel": p.per_channel, "weights": p.weights,
                          "activations": p.activations, "exclude": p.exclude, "preset": asdict(preset),
                          "check": check,
                          "ops": export.op_counts(out)})


class VisionQat(Technique):
    name = "vision-qat"
    kinds = frozenset({Kind.qat})
    tasks = IMAGE_TASKS
    params = QatParams
    formats = ("onnx-image",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch

        from zoo.families.image_classification import bn_fold, export, qat, train
        from zoo.families.image_classification import model as vm
        from zoo.techniques._train import seed_everything, set_threads

        p: QatParams = ctx.params  # type: ignore[assignment]
        set_threads()
        seed_everything(p.seed)
        preset = _preset(p.isa, ctx.target.isa)
        parent, config = _parent(ctx)
        splits = _splits(ctx)
        tx, ty = _test_x(splits, config)
        reference = train.predict(parent, tx)
        bn_fold.fold_bn(parent)
        qmodel = qat.prepare(parent)
        size, mean, std = config["image_size"], config["mean"], config["std"]
        cx = vm.preprocess(splits.calibration.head(p.calibration.samples).images, size, mean, std)
        qat.calibrate(qmodel, [cx[i : i + 32] for i in range(0, len(cx), 32)])
        x = vm.preprocess(splits.train.images, size, mean, std)
        ctx.log(f"{_key(ctx)}: fake-quant training on {len(x)} images")
        training = train.fit(qmodel, x, torch.from_numpy(splits.train.labels), p.epochs, p.lr, p.batch_size,
                             p.weight_decay, p.seed, ctx.progress, f"{_key(ctx)} qat")
        qat.freeze(qmodel)
        fake_quant = train.predict(qmodel, tx)
        out = ctx.out_dir / vm.ONNX
        export.export_onnx(qmodel, size, out)
        converted = export.fold_weight_quantizers(out)
        got = export.run(export.session(out), tx.numpy())
        check = {"rows": len(ty), "top1": train.top1(got, ty), "parent_top1": train.top1(reference, ty),
                 "fake_quant_top1": train.top1(fake_quant, ty),
                 "vs_fake_quant": train.agreement(fake_quant, got), "vs_parent": train.agreement(reference, got)}
        ctx.log(f"{_key(ctx)}: QAT int8 top-1 {check['top1']:.1%} vs fp32 {check['parent_top1']:.1%}")
        arch = {**config["architecture"], "folded": True}
        _write_pre_export(qmodel, ctx.out_dir / "torch", arch, config)
        config = vm.write_config(ctx.out_dir, arch, size, config["label_names"], mean, std, "onnx-image", "int8",
                                 pre_export="torch")
        calibration = {**splits.describe("calibration"), "method": "minmax", "samples": len(cx),
                       "use": "initial activation ranges; EMA-updated during training"}
        return _extra("onnx-image", "int8", config, export.initializer_elements(out), training=training,
                      calibration=calibration, quantization={
                          "mode": "qat", "format": "QDQ", "per_channel": True, "weights": "int8",
                          "activations": "uint8", "weights_stored_int8": converted, "preset": asdict(preset),
                          "check": check, "ops": export.op_counts(out)})


def _write_pre_export(qmodel: Any, dest: Path, arch: dict[str, Any], config: dict[str, Any]) -> None:
    """The QAT-trained float weights (BN folded, no fake quant) as a torch-image folder, reloaded to check."""
    from zoo.families.image_classification import model as vm
    from zoo.families.image_classification.qat import ActQuant

    drop = tuple(f"{n}." for n, m in qmodel.model.named_modules() if isinstance(m, ActQuant))
    state = {k: v for k, v in qmodel.model.state_dict().items() if not k.startswith(drop)}
    plain = vm.EfficientNetLite(arch)
    plain.load_state_dict(state)  # raises if the keys drifted from the plain module's
    dest.mkdir(parents=True, exist_ok=True)
    vm.save_torch(plain, dest)
    vm.write_config(dest, arch, config["image_size"], config["label_names"], config["mean"], config["std"],
                    "torch-image", "fp32", note="QAT weights before export; fake quantization not applied")
