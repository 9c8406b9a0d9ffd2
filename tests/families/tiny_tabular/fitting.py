"""Fitting the network from scratch on the training rows, with the settings in :mod:`.presets`."""

from __future__ import annotations

from typing import Any

from . import model, presets


def fit(rows: list[list[float]], labels: list[int], classes: int, hidden: int, epochs: int, lr: float, seed: int
        ) -> tuple[Any, float]:
    """The trained network and its final training loss."""
    import torch

    torch.manual_seed(seed)
    x, y = torch.tensor(rows, dtype=torch.float32), torch.tensor(labels)
    net = model.build(x.shape[1], classes, hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=presets.WEIGHT_DECAY)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    return net, float(loss.detach())
