"""The network (a two-layer MLP over the measurements) and its artifact: model.safetensors + config.json.

Standalone (no project imports): the Space copies it beside its app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "tabular-torch"


def build(features: int, classes: int, hidden: int) -> Any:
    import torch

    return torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))


def save(net: Any, folder: Path, config: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**config, "format": FORMAT}, indent=2) + "\n")


def load(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The network (in the stored dtype) and its config."""
    import torch
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    state = load_file(str(folder / "model.safetensors"))
    net = build(config["features"], len(config["label_names"]), config["hidden"])
    net.load_state_dict({k: v.float() for k, v in state.items()})
    dtype = getattr(torch, config.get("torch_dtype", "float32"))
    return net.to(dtype).eval(), config


def predict(net: Any, rows: list[list[float]]) -> list[int]:
    import torch

    dtype = next(net.parameters()).dtype
    with torch.no_grad():
        return net(torch.tensor(rows, dtype=dtype)).float().argmax(dim=1).tolist()
