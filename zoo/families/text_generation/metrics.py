"""Language-model metrics: perplexity on held-out text and next-word exact match, over any logits function.

Both take plain callables so one implementation serves torch, bitsandbytes and ONNX Runtime models alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from zoo.errors import ZooError

TASK_METRIC = "exact_match"  # the task metric's name in registry.yaml (evaluation.metrics)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def perplexity(logits_fn: Callable[[Any], Any], tokenizer: Any, texts: Sequence[str], max_length: int = 256) -> float:
    """Token-level perplexity: exp of the mean negative log-likelihood of every token after a text's first.

    Args:
        logits_fn: ``input_ids`` (a ``1 × T`` torch LongTensor) -> logits ``1 × T × V`` (any float dtype).
        texts: each is scored alone (no padding), truncated to ``max_length`` tokens.

    Raises:
        ZooError: no text has two tokens, or the model gives non-finite log-likelihoods.
    """
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"]
            if ids.shape[1] < 2:
                continue
            logits = logits_fn(ids).float()[0, :-1]
            nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
            total += float(nll)
            count += ids.shape[1] - 1
    if count == 0:
        raise ZooError("perplexity: no text has two tokens: check the dataset split")
    value = math.exp(total / count)
    if not math.isfinite(value):
        raise ZooError(f"perplexity is {value}: the model gives non-finite log-likelihoods")
    return value


def next_word_examples(texts: Sequence[str], limit: int | None = None) -> list[tuple[str, str]]:
    """``(prompt, word)`` pairs: each text cut before its middle word, and that word (letters only, lower case).

    The middle word mixes function words, names and content words; a text's last word is mostly a hard content word.
    """
    out = []
    for text in texts:
        words = list(_WORD.finditer(text))
        if len(words) < 4:
            continue
        word = words[len(words) // 2]
        out.append((text[: word.start()].rstrip(" "), word.group().lower()))
        if limit is not None and len(out) >= limit:
            break
    return out


def first_word(text: str) -> str:
    """The first word of a continuation, lower case ("" when there is none)."""
    m = _WORD.search(text)
    return m.group().lower() if m else ""


def exact_match(continue_fn: Callable[[str], str], examples: Sequence[tuple[str, str]]) -> float:
    """Share of examples whose greedy continuation starts with exactly the held-out word."""
    if not examples:
        raise ZooError("exact_match: no held-out text has four words: check the dataset split")
    hits = sum(first_word(continue_fn(prompt)) == word for prompt, word in examples)
    return hits / len(examples)
