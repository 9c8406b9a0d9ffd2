"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"): rescale consecutive convs so each channel
has the same weight range in both, without changing the function.

For conv1 → act → conv2 with a positively homogeneous act (ReLU: ``relu(x / s) = relu(x) / s`` for s > 0), output
channel i of conv1 is divided by ``s_i = sqrt(r1_i / r2_i)`` and input channel i of conv2 multiplied by it, where
r1/r2 are the channels' max |w|; both ranges become ``sqrt(r1_i * r2_i)``. Pairs are found along ``nn.Sequential``
chains (nested Sequentials are one chain; any other module breaks it), conv2 being a plain or depthwise conv.

ReLU6 is not scale-equivariant (``min(relu(x / s), 6) != min(relu(x), 6) / s``). Two ways, chosen by ``relu6``:
- "clip" (default, exact): ReLU6 becomes :class:`ChannelClip`, a ReLU with a per-channel upper bound that is
  rescaled with its channel (``6 / s_i``), so the function is unchanged; ONNX gets Relu + Min.
- "relu": ReLU6 becomes ReLU before equalizing, as AIMET does; the function changes wherever an activation
  exceeded 6.
Batch norm must be folded first (a BN between the convs would undo the scaling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from zoo.errors import ZooError

PASS_THROUGH = (nn.Identity, nn.ZeroPad2d)  # modules between the act and conv2 that commute with scaling


class ChannelClip(nn.Module):
    """``min(relu(x), upper[c])`` per channel: a ReLU6 whose bound can follow a per-channel rescaling."""

    def __init__(self, channels: int, upper: float = 6.0):
        super().__init__()
        self.register_buffer("upper", torch.full((channels,), float(upper)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.relu(x), self.upper.view(1, -1, 1, 1))


@dataclass
class Pair:
    conv1: nn.Conv2d
    act: nn.Module  # ReLU, ChannelClip or Identity (a linear link)
    conv2: nn.Conv2d
    name: str  # qualified name of conv1, for reports


def _flatten(module: nn.Module, prefix: str) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, leaf) along a Sequential, descending into nested Sequentials."""
    out = []
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            out += _flatten(child, f"{prefix}{name}.")
        else:
            out.append((module, name, child))
    return out


def _is_pass_through(m: nn.Module) -> bool:
    return isinstance(m, PASS_THROUGH) or type(m).__name__ == "SamePad"  # zero padding commutes with scaling


def _convertible(conv1: nn.Conv2d, conv2: nn.Conv2d) -> bool:
    if conv1.groups not in (1, conv1.out_channels):
        return False
    plain = conv2.groups == 1 and conv2.in_channels == conv1.out_channels
    depthwise = conv2.groups == conv2.in_channels == conv2.out_channels == conv1.out_channels
    return plain or depthwise


def find_pairs(model: nn.Module, relu6: Literal["clip", "relu"] = "clip") -> list[Pair]:
    """The conv pairs CLE can rescale, replacing each ReLU6 between them by ChannelClip or ReLU (see module doc).

    Raises:
        ZooError: a BatchNorm sits between two convs (fold it first: ``bn_fold: true``).
    """
    names = {id(m): n for n, m in model.named_modules()}
    pairs: list[Pair] = []
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        chain = _flatten(seq, "")
        for i, (_, _, first) in enumerate(chain):
            if not isinstance(first, nn.Conv2d):
                continue
            act_slot, j = None, i + 1
            while j < len(chain):
                parent, attr, m = chain[j]
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    raise ZooError(f"cle: '{names.get(id(m), attr)}' is an unfolded BatchNorm: set bn_fold: true "
                                   "in the recipe (CLE needs folded batch norm)")
                if isinstance(m, nn.ReLU | nn.ReLU6 | ChannelClip) and act_slot is None:
                    act_slot = (parent, attr, m)
                elif not _is_pass_through(m):
                    break
                j += 1
            if j == len(chain) or not isinstance(chain[j][2], nn.Conv2d) or not _convertible(first, chain[j][2]):
                continue
            act: nn.Module = nn.Identity()
            if act_slot is not None:
                parent, attr, act = act_slot
                if isinstance(act, nn.ReLU6):
                    act = ChannelClip(first.out_channels) if relu6 == "clip" else nn.ReLU()
                    setattr(parent, attr, act)
            pairs.append(Pair(first, act, chain[j][2], names.get(id(first), "?")))
    unique = {id(p.conv1): p for p in pairs}  # nested Sequentials are visited once per level
    return list(unique.values())


def out_ranges(conv: nn.Conv2d) -> torch.Tensor:
    """Max |w| of each output channel."""
    return conv.weight.detach().abs().flatten(1).amax(1)


def _in_ranges(conv: nn.Conv2d) -> torch.Tensor:
    w = conv.weight.detach().abs()
    return w.flatten(1).amax(1) if conv.groups > 1 else w.transpose(0, 1).flatten(1).amax(1)


def channel_range_spread(conv: nn.Conv2d) -> float:
    """max / min over output channels of max |w|: how badly one per-tensor scale fits this layer's channels.

    Channels whose weights are all zero (dead after folding a zero BN scale) are left out: they quantize exactly.
    """
    r = out_ranges(conv)
    r = r[r > 0]
    return float(r.max() / r.min()) if len(r) else 1.0


@torch.no_grad()
def equalize(model: nn.Module, relu6: Literal["clip", "relu"] = "clip", iterations: int = 20,
             tolerance: float = 1e-4) -> dict[str, float | int | str]:
    """Cross-layer-equalize every pair in place, sweeping until the scales settle (chains of 3+ convs interact).

    Returns:
        ``{"pairs", "sweeps", "relu6", "spread_before", "spread_after"}``; spreads are geometric means over the
        pairs' first convs of :func:`channel_range_spread`.
    """
    pairs = find_pairs(model, relu6)
    if not pairs:
        return {"pairs": 0, "sweeps": 0, "relu6": relu6, "spread_before": 1.0, "spread_after": 1.0}
    before = _geomean([channel_range_spread(p.conv1) for p in pairs])
    sweeps = 0
    for sweeps in range(1, iterations + 1):  # noqa: B007 - the count is reported
        worst = 0.0
        for p in pairs:
            r1, r2 = out_ranges(p.conv1), _in_ranges(p.conv2)
            ok = (r1 > 0) & (r2 > 0)
            s = torch.where(ok, torch.sqrt(r1 / r2.clamp(min=1e-12)), torch.ones_like(r1))
            _scale(p, s)
            worst = max(worst, float(s.log().abs().max()))
        if worst < tolerance:
            break
    after = _geomean([channel_range_spread(p.conv1) for p in pairs])
    return {"pairs": len(pairs), "sweeps": sweeps, "relu6": relu6, "spread_before": round(before, 3),
            "spread_after": round(after, 3)}


def _scale(p: Pair, s: torch.Tensor) -> None:
    p.conv1.weight.div_(s.view(-1, *([1] * (p.conv1.weight.dim() - 1))))
    if p.conv1.bias is not None:
        p.conv1.bias.div_(s)
    if isinstance(p.act, ChannelClip):
        p.act.upper.div_(s)
    if p.conv2.groups > 1:
        p.conv2.weight.mul_(s.view(-1, 1, 1, 1))
    else:
        p.conv2.weight.mul_(s.view(1, -1, 1, 1))


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(max(v, 1e-12)) for v in values) / len(values))
