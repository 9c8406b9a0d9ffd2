"""Text generation (causal LMs): held-out text chunks, perplexity and next-word exact match, timed as one forward
pass (prefill) of ``evaluation.seq_len`` tokens per row."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.registry.schema import Model, Task
from zoo.tasks.base import PerfModel, Scores, TaskHandler, params_from_provenance, seeded_subset

SAMPLE_TEXT = "the night is cold and the king is dead; the prince speaks to the ghost on the castle wall. " * 8


@dataclass
class TextRows:
    """The evaluated held-out chunks and their chunk numbers in the source."""

    texts: list[str]
    indices: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def indices_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.indices).encode()).hexdigest()[:16]


class TextGeneration(TaskHandler):
    task = Task.text_generation
    formats = ("transformers-causal-lm", "onnx-genai")

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        from zoo.lm.data import load_splits

        return load_splits(model.dataset, root, field)

    def test_rows(self, model: Model, root: Path, field: str) -> TextRows:
        from zoo.data import load_splits

        splits = load_splits(model, root, field)
        texts, indices = splits.test, splits.indices["test"]
        keep = seeded_subset(len(texts), model.evaluation.samples, model.evaluation.seed)
        if keep is None:
            return TextRows(list(texts), list(indices))
        return TextRows([texts[i] for i in keep], [indices[i] for i in keep])

    def evaluate(self, artifact_dir: Path, model: Model, root: Path, field: str, device: str, key: str) -> Scores:
        from zoo.data import load_splits

        ev = model.evaluation
        if ev.kfold:
            raise ZooError(f"{field.removesuffix('.dataset')}.evaluation.kfold: k-fold spread is computed for "
                           "classification only: remove kfold for text-generation")
        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        gen = load(artifact_dir)
        scores: dict[str, float] = {}
        details: dict[str, Any] = {"max_length": ev.seq_len, "runtime": gen.runtime}
        for metric in (m.value for m in ev.metrics):
            if metric == "perplexity":
                scores[metric] = gen.perplexity(rows.texts, ev.seq_len)
            elif metric == "exact_match":
                got = gen.task_metric(rows.texts, max_length=ev.seq_len)
                scores[metric] = float(got["exact_match"])
                details["exact_match_samples"] = int(got["samples"])
            else:
                raise ZooError(f"evaluation.metrics: '{metric}' is not a text-generation metric: use perplexity or "
                               "exact_match")
        test = {**splits.describe("test"), "samples": len(rows), "indices_sha256": rows.indices_hash()}
        return Scores(scores, len(rows), test, None, details)

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        from zoo.formats import onnx_params, read_provenance

        gen = load(artifact_dir)
        ids = gen.tokenizer(SAMPLE_TEXT, return_tensors="pt")["input_ids"][0]
        if len(ids) == 0:
            raise ZooError(f"{artifact_dir}: the tokenizer gives no token for the sample text")
        ids = ids.repeat(seq_len // len(ids) + 1)[:seq_len]

        def runner(n: int):
            batch = ids.unsqueeze(0).repeat(n, 1)
            return lambda: gen.logits(batch)

        params = params_from_provenance(artifact_dir)
        if params is None:
            onnx = sorted(artifact_dir.glob("*.onnx"))
            params = onnx_params(onnx[0]) if onnx else sum(p.numel() for p in gen.model.parameters())
        dtype = read_provenance(artifact_dir).get("dtype") or gen.dtype
        return PerfModel(gen.runtime, dtype, params, runner,
                         f"one forward pass (prefill, no KV cache) over {seq_len} tokens per row, logits at every "
                         "position", {"seq_len": seq_len})

    def examples(self, model: Model, root: Path, field: str, n: int, max_chars: int = 160) -> list[str]:
        """Up to ``n`` prompts: the opening whole lines (at most ``max_chars``) of held-out chunks."""
        from zoo.data import load_splits

        out: list[str] = []
        for text in load_splits(model, root, field).test:
            prompt = ""
            for line in text.splitlines():
                if prompt and len(prompt) + 1 + len(line) > max_chars:
                    break
                prompt = f"{prompt}\n{line}" if prompt else line[:max_chars]
            if prompt.strip():
                out.append(prompt)
            if len(out) >= n:
                break
        if not out:
            raise ZooError(f"{field}: no held-out text to use as an example prompt")
        return out


def load(artifact_dir: Path) -> Any:
    """The artifact's :class:`zoo.lm.Generator`, with torch and ONNX Runtime using ``zoo.formats.threads()``.

    Raises:
        ZooError: the folder is not a causal-LM artifact or does not load.
    """
    from zoo.formats import set_threads, threads
    from zoo.lm.generator import load_generator

    set_threads()
    try:
        return load_generator(artifact_dir, threads=threads())
    except (OSError, ValueError, RuntimeError, ImportError) as e:
        raise ZooError(f"{artifact_dir}: cannot load the causal LM: {str(e).splitlines()[0]}") from e
