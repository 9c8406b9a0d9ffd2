"""Batch-norm folding: merge each BatchNorm2d into the Conv2d before it, so the quantizer sees one op per layer.

Folding works on ``nn.Sequential`` containers: a Conv2d immediately followed by a BatchNorm2d in the same Sequential
is folded (as in ``torch.ao.quantization.fuse_modules``), which covers every conv of
``.model``. The
opposite, :func:`unfold_bn`, turns each BatchNorm2d into an explicit per-channel multiply-add that no exporter can
fuse, which is how an int8 build *without* folding keeps batch norm as separate, separately quantized ops.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelAffine(nn.Module):
    """``x * scale + shift`` per channel: an eval-mode batch norm written as plain Mul and Add."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().view(1, -1, 1, 1))
        self.register_buffer("shift", shift.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias.detach() - bn.running_mean * scale


def _pairs(model: nn.Module):
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            names = list(seq._modules)
            for a, b in zip(names, names[1:], strict=False):
                conv, bn = seq._modules[a], seq._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    yield seq, b, conv, bn


@torch.no_grad()
def fold_bn(model: nn.Module) -> int:
    """Fold every Conv2d → BatchNorm2d pair in place (the BN becomes Identity, the conv gains a bias).

    The running statistics are used, so the model must be meant for eval mode. Returns how many were folded.
    """
    count = 0
    for seq, bn_name, conv, bn in list(_pairs(model)):
        scale, shift = _bn_scale_shift(bn)
        conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        bias = shift if conv.bias is None else conv.bias.detach() * scale + shift
        conv.bias = nn.Parameter(bias.clone())
        setattr(seq, bn_name, nn.Identity())
        count += 1
    return count


def unfold_bn(model: nn.Module) -> int:
    """Replace every BatchNorm2d by its eval-mode :class:`ChannelAffine`, so an ONNX export keeps it separate."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, ChannelAffine(*_bn_scale_shift(child)))
                count += 1
    return count


def count_bn(model: nn.Module) -> int:
    """How many BatchNorm layers the model still has."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
