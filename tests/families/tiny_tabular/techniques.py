"""The family's own techniques: fit the MLP from scratch (fp32) and store it in fp16 (w16a16)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique

from . import fitting, model

TASKS = frozenset({"tabular-classification"})


class FitParams(Params):
    epochs: int = 300
    lr: float = 0.05


class TabularFit(Technique):
    name = "tabular-fit"
    kinds: ClassVar = frozenset({Kind.fp32})
    tasks = TASKS
    params = FitParams
    formats = (model.FORMAT,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        p: FitParams = ctx.params
        splits = ctx.splits()
        hidden = json.loads(ctx.parent_dir.read_text())["hidden"]  # the base: the network's shape
        net, loss = fitting.fit(splits.train.inputs, splits.train.labels, len(splits.label_names), hidden, p.epochs,
                                p.lr, p.seed)
        config = {"features": len(splits.train.inputs[0]), "hidden": hidden,
                  "label_names": splits.label_names, "torch_dtype": "float32"}
        model.save(net, ctx.out_dir, config)
        return {"format": model.FORMAT, "dtype": "fp32", "label_names": splits.label_names,
                "training": {"epochs": p.epochs, "lr": p.lr, "final_loss": round(loss, 4)}}


class TabularHalf(Technique):
    name = "tabular-half"
    kinds: ClassVar = frozenset({Kind.w16a16})
    tasks = TASKS
    formats = (model.FORMAT,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch

        net, config = model.load(ctx.parent_dir)
        model.save(net.to(torch.float16), ctx.out_dir, {**config, "torch_dtype": "float16"})
        return {"format": model.FORMAT, "dtype": "fp16", "label_names": config["label_names"]}
