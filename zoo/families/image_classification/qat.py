"""Quantization-aware training: fake-quant modules placed where ONNX Runtime's int8 kernels quantize, so the
QDQ graph exported from the trained model computes what training saw.

- weights: every Conv2d / Linear is swapped for :class:`QConv2d` / :class:`QLinear`, which fake-quantize their
  weights per output channel, symmetric int8 (scale = max|w| / 127), with a straight-through gradient;
- activations: :class:`ActQuant` (per-tensor, asymmetric uint8, range from observed min/max with an EMA) on the
  model input, after each conv unit of a Sequential (conv → [bn] → [act]), after each residual sum (the ``post``
  slot of ``zoo.families.image_classification.model.MBConv``), and on the input of each Linear.

Ranges always include 0, so a ReLU6 output gets zero point 0 and range ≤ 6, and ONNX Runtime drops the Clip
before the QuantizeLinear and runs the conv as an int8 kernel. Batch norm is folded before QAT (``bn_fold``), the
usual choice for small-batch fine-tuning: the quantized weights are then the ones trained.
"""

from __future__ import annotations

import torch
from torch import nn

ACTS = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
SKIP_IN_UNIT = (nn.Identity, nn.modules.batchnorm._BatchNorm)


class ActQuant(nn.Module):
    """Per-tensor uint8 fake quantization of activations; observes min/max while ``observe`` is on."""

    def __init__(self, momentum: float = 0.01):
        super().__init__()
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))
        self.momentum = momentum
        self.observe = True
        self.quantize = False

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = torch.clamp(self.lo, max=0.0), torch.clamp(self.hi, min=0.0)
        scale = torch.clamp((hi - lo) / 255.0, min=1e-8)
        zero = torch.clamp(torch.round(-lo / scale), 0, 255).to(torch.int32)
        return scale, zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observe and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            with torch.no_grad():
                lo, hi = x.detach().min(), x.detach().max()
                if not bool(self.seen):
                    self.lo.copy_(lo)
                    self.hi.copy_(hi)
                    self.seen.fill_(True)
                elif self.training:
                    self.lo.lerp_(lo, self.momentum)
                    self.hi.lerp_(hi, self.momentum)
                else:  # calibration: plain min/max over the batches seen
                    self.lo.copy_(torch.minimum(self.lo, lo))
                    self.hi.copy_(torch.maximum(self.hi, hi))
        if not self.quantize:
            return x
        scale, zero = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def weight_scale(w: torch.Tensor) -> torch.Tensor:
    return (w.detach().abs().flatten(1).amax(1) / 127.0).clamp(min=1e-8)


def _weight_fq(w: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    scale = weight_scale(w) if scale is None else scale
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127)


class QConv2d(nn.Conv2d):
    """A Conv2d whose weights are fake-quantized per output channel (int8, symmetric)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _weight_fq(self.weight, getattr(self, "w_scale", None)), self.bias)


class QLinear(nn.Linear):
    """A Linear with per-channel int8 fake-quant weights and a fake-quantized input."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_quant = ActQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.in_quant(x), _weight_fq(self.weight, getattr(self, "w_scale", None)),
                                    self.bias)


class QATModel(nn.Module):
    """The prepared model: input fake-quant, then the model with its layers swapped and quantizers inserted."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.in_quant = ActQuant()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.in_quant(x))


def _swap(parent: nn.Module) -> None:
    for name, child in list(parent.named_children()):
        if type(child) is nn.Conv2d:
            q = QConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                        child.dilation, child.groups, child.bias is not None, child.padding_mode)
            q.load_state_dict(child.state_dict())
            setattr(parent, name, q)
        elif type(child) is nn.Linear:
            q = QLinear(child.in_features, child.out_features, child.bias is not None)
            q.load_state_dict(child.state_dict(), strict=False)
            setattr(parent, name, q)
        else:
            _swap(child)


def _insert_output_quants(model: nn.Module) -> None:
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for i, name in enumerate(names):
            if not isinstance(seq._modules[name], nn.Conv2d):
                continue
            end = i
            while end + 1 < len(names) and isinstance(seq._modules[names[end + 1]], (*SKIP_IN_UNIT, *ACTS)):
                end += 1
                if isinstance(seq._modules[names[end]], ACTS):
                    break
            last = names[end]
            setattr(seq, last, nn.Sequential(seq._modules[last], ActQuant()))
    for m in model.modules():
        if getattr(m, "residual", False) and isinstance(getattr(m, "post", None), nn.Identity):
            m.post = ActQuant()


def prepare(model: nn.Module) -> QATModel:
    """Swap layers and insert fake-quant modules in place; quantizers start observing, not quantizing."""
    _insert_output_quants(model)
    _swap(model)
    return QATModel(model)


def act_quants(model: nn.Module) -> list[ActQuant]:
    return [m for m in model.modules() if isinstance(m, ActQuant)]


def set_mode(model: nn.Module, observe: bool, quantize: bool) -> None:
    """Turn range observation and fake quantization on or off in every ActQuant."""
    for q in act_quants(model):
        q.observe, q.quantize = observe, quantize


@torch.no_grad()
def calibrate(model: QATModel, batches) -> None:
    """Initialise every activation range with min/max over ``batches`` (eval mode), then enable fake quant."""
    model.eval()
    set_mode(model, observe=True, quantize=False)
    for x in batches:
        model(x)
    set_mode(model, observe=True, quantize=True)


@torch.no_grad()
def freeze(model: nn.Module) -> None:
    """Fix every quantizer for export: weight scales become buffers (constants in ONNX) and ranges stop moving."""
    model.eval()
    set_mode(model, observe=False, quantize=True)
    for m in model.modules():
        if isinstance(m, QConv2d | QLinear):
            m.register_buffer("w_scale", weight_scale(m.weight), persistent=False)
