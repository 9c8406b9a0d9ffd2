"""One small training loop for image classifiers (fine-tuning, QAT, fine-tuning after pruning) and a top-1 check."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.errors import ZooError


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: float, lr: float, batch_size: int,
        weight_decay: float = 1e-4, seed: int = 0, progress: Any = None, desc: str = "train",
        after_step: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train ``model`` on preprocessed images ``x`` [N,3,H,W] and labels ``y`` with AdamW and a cosine schedule.

    Args:
        epochs: may be fractional; after_step: called after every optimizer step (e.g. to re-apply a prune mask).

    Returns:
        ``{"steps", "final_loss", "seconds"}``; final_loss is the mean over the last (up to) 10 steps.

    Raises:
        ZooError: nothing to train on, or the loss became NaN/inf (lower lr in the recipe).
    """
    if len(x) == 0:
        raise ZooError(f"{desc}: no training images: raise dataset.split.train")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    per_epoch = math.ceil(len(x) / batch_size)
    total = max(1, math.ceil(epochs * per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(seed)
    task = None
    if progress is not None:
        from zoo.progress import add

        task = add(progress, desc, total)
    recent: list[float] = []
    step, start = 0, time.perf_counter()
    model.train()
    try:
        while step < total:
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise ZooError(f"{desc}: the loss became {value} at step {step + 1}: lower lr in the recipe")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if after_step is not None:
                    after_step()
                step += 1
                recent = (recent + [value])[-10:]
                if task is not None:
                    progress.update(task, advance=1, info=f"loss {value:.3f}")
                if step >= total:
                    break
    finally:
        model.eval()
    return {"steps": step, "final_loss": round(sum(recent) / len(recent), 4),
            "seconds": round(time.perf_counter() - start, 2)}


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 128) -> np.ndarray:
    """Logits (float32 numpy) of ``model`` in eval mode for preprocessed ``x``."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)]).numpy()


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return round(float((logits.argmax(-1) == np.asarray(labels)).mean()), 4)


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and largest absolute logit difference of ``candidate`` against ``reference``."""
    return {"top1_agreement": round(float((reference.argmax(-1) == candidate.argmax(-1)).mean()), 4),
            "max_abs_diff": round(float(np.abs(reference - candidate).max()), 5)}


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Faster-moving BN statistics for a short fine-tune on a new domain (the ImageNet default is 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> int:
    """Re-estimate every BatchNorm's running mean/variance over ``x`` (cumulative average, no weight change).

    Pruning channels or fine-tuning briefly leaves the running statistics describing a network that no longer
    exists; eval-mode accuracy then collapses although the training loss is low. Returns the number of BN layers.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size])
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        model.eval()
    return len(bns)
