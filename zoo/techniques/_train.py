"""Shared pieces of the training techniques: threads, label maps, batches, one plain torch training loop, saving.

Everything here is a small function over torch and transformers objects, so finetune, qlora and distill share one
loop (AdamW, linear warmup then decay, gradient clipping, a rich progress task) instead of three copies.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def set_threads() -> int:
    """Size torch's intra-op pool: ``ZOO_THREADS`` if set, else every core this process may use; returns the count.

    The count is fixed rather than read from the machine's load, so the same build gets the same thread count and
    the same floating-point results. On a machine shared with other heavy work, set ``ZOO_THREADS`` to the idle
    cores: OpenMP threads on busy cores wait on each other (measured: 2 threads on 2 busy cores trained 10x slower
    than 1).
    """
    import torch

    from zoo.formats import threads

    n = threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators, so a new head's initialisation and dropout repeat exactly."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def label_maps(label_names: Sequence[str] | None) -> tuple[dict[int, str], dict[str, int]]:
    """``(id2label, label2id)`` for a classification config.

    Raises:
        ZooError: the dataset has no labels (it must declare ``dataset.label`` for a classification task).
    """
    if not label_names:
        raise ZooError("dataset.label: a text-classification model needs a label column; name it in dataset.label")
    return dict(enumerate(label_names)), {name: i for i, name in enumerate(label_names)}


class Batches:
    """Rows served per epoch as (optionally shuffled) batches, each tokenized and padded to its longest row.

    Calling it with an epoch number yields dicts of tensors (``input_ids``, ``attention_mask``, … and ``labels``
    when labels were given); the shuffle order depends only on ``seed`` and the epoch.
    """

    def __init__(self, tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None, batch_size: int,
                 max_length: int, shuffle: bool = True, seed: int = 0):
        if not texts:
            raise ZooError("dataset.split.train: no training rows: raise dataset.split.train")
        self.tokenizer = tokenizer
        self.texts = list(texts)
        self.labels = None if labels is None else list(labels)
        self.batch_size = batch_size
        self.max_length = max_length
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        return math.ceil(len(self.texts) / self.batch_size)

    def __call__(self, epoch: int = 0) -> Iterator[dict[str, Any]]:
        import torch

        order = list(range(len(self.texts)))
        if self.shuffle:
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = dict(self.tokenizer([self.texts[i] for i in idx], truncation=True, max_length=self.max_length,
                                        padding=True, return_tensors="pt"))
            if self.labels is not None:
                batch["labels"] = torch.tensor([self.labels[i] for i in idx], dtype=torch.long)
            yield batch


def tokenize_batches(tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None, batch_size: int,
                     max_length: int, shuffle: bool = True, seed: int = 0) -> Batches:
    """A :class:`Batches` over ``texts`` (call it with the epoch number to iterate one epoch)."""
    return Batches(tokenizer, texts, labels, batch_size, max_length, shuffle, seed)


def default_loss(model: Any, batch: dict[str, Any]) -> Any:
    """The model's own loss (cross-entropy for sequence classification, given ``labels`` in the batch)."""
    return model(**batch).loss


def train_loop(model: Any, batches_fn: Batches, epochs: float, lr: float, weight_decay: float = 0.0,
               warmup_ratio: float = 0.0, progress: Any = None, desc: str = "train",
               loss_fn: Callable[[Any, dict[str, Any]], Any] | None = None, max_grad_norm: float = 1.0,
               ) -> dict[str, Any]:
    """Train the parameters of ``model`` that require grad with AdamW and a linear warmup/decay schedule.

    Args:
        model: a torch module, put in train mode for the loop and back in eval mode after it.
        batches_fn: a :class:`Batches` (or any callable ``epoch -> iterable of batches`` with ``len``).
        epochs: may be fractional (0.5 trains on the first half of one shuffled epoch).
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``; default: the model's own loss.
        progress: a rich Progress (``zoo.progress.bar()``) or None; one task shows steps and the running loss.

    Returns:
        ``{"steps", "final_loss", "seconds"}``; final_loss is the mean over the last (up to) 10 steps.

    Raises:
        ZooError: nothing is trainable, or the loss became NaN/inf (lower ``lr``).
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    loss_fn = loss_fn or default_loss
    per_epoch = len(batches_fn)
    total = max(1, math.ceil(epochs * per_epoch))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ZooError(f"{desc}: the model has no trainable parameters")
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    task = None
    if progress is not None:
        from zoo.progress import add

        task = add(progress, desc, total)
    recent: list[float] = []
    step = 0
    start = time.perf_counter()
    model.train()
    try:
        epoch = 0
        while step < total:
            for batch in batches_fn(epoch):
                loss = loss_fn(model, batch)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise ZooError(f"{desc}: the loss became {value} at step {step + 1}: lower lr in the recipe")
                loss.backward()
                if max_grad_norm:
                    torch.nn.utils.clip_grad_norm_([p for _, p in named], max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                recent = (recent + [value])[-10:]
                if task is not None:
                    progress.update(task, advance=1, info=f"loss {value:.3f}")
                if step >= total:
                    break
            epoch += 1
    finally:
        model.eval()
    return {"steps": step, "final_loss": round(sum(recent) / len(recent), 4),
            "seconds": round(time.perf_counter() - start, 2)}


def predict_logits(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 32) -> Any:
    """Logits of a torch sequence classifier for ``texts`` (in order), computed without gradients."""
    import torch

    batches = Batches(tokenizer, texts, None, batch_size, max_length, shuffle=False)
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(**b).logits.float() for b in batches(0)])


def params_count(model: Any) -> int:
    """Number of parameters (elements) of a torch module."""
    return sum(p.numel() for p in model.parameters())


def parent_provenance(parent_dir: Path) -> dict[str, Any]:
    """The provenance of a built parent artifact, or {} for a base model folder (which has none)."""
    import json

    path = Path(parent_dir) / "provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_with_tokenizer(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """Write ``model`` as safetensors (plus config) and its tokenizer files into ``out_dir``."""
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
