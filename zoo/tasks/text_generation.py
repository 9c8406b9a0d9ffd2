"""Text generation (causal LMs): held-out text chunks scored through the project's lm-evaluation-harness task
(perplexity, next-word accuracy, repetition and agreement of greedy continuations), timed as one forward pass
(prefill) of ``evaluation.seq_len`` tokens per row."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.registry.schema import Model, Task
from zoo.tasks.base import PerfModel, Scores, TaskHandler, params_from_provenance, seeded_subset

GENERATION_OPENINGS = 40  # held-out openings continued greedily per variant (bf16/NF4 generation is slow on CPU)
REPETITION_MARGIN = 0.10  # a variant's repeated-trigram rate may exceed its reference's by at most this
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
        """Every metric through the project's lm-evaluation-harness task (:mod:`zoo.lm.harness`) on the held-out
        chunks: token perplexity of the passages, next-word accuracy (``exact_match``) on the cloze items, and the
        generation metrics of greedy continuations of ``GENERATION_OPENINGS`` openings, each with its interval."""
        from zoo.data import load_splits
        from zoo.lm import harness, quality

        ev = model.evaluation
        if ev.kfold:
            raise ZooError(f"{field.removesuffix('.dataset')}.evaluation.kfold: k-fold spread is computed for "
                           "classification only: remove kfold for text-generation")
        for metric in (m.value for m in ev.metrics):
            if metric not in ("perplexity", "exact_match"):
                raise ZooError(f"evaluation.metrics: '{metric}' is not a text-generation metric: use perplexity or "
                               "exact_match")
        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        name = harness.task_name(key.split(":")[0])
        task_rows = harness.build_rows(rows.texts, GENERATION_OPENINGS)
        gen = load(artifact_dir)
        with tempfile.TemporaryDirectory(prefix="zoo-lm-eval-") as tmp:
            task = harness.write_task(Path(tmp) / "lm_eval_task", name, task_rows)
            got = harness.run(gen, Path(tmp) / "lm_eval_task", name, ev.batch_size,
                              artifact_dir.with_name(artifact_dir.name + ".lm_eval.log"))
        intervals = {
            "perplexity": quality.perplexity_interval(got.passages_loglik, got.passages_tokens),
            "exact_match": quality.mean_interval(got.cloze_acc),
            **{m: quality.mean_interval(v) for m, v in got.generation.items()},
        }
        metrics = {m: iv["value"] for m, iv in intervals.items()}
        details: dict[str, Any] = {
            "runtime": gen.runtime, "intervals": intervals,
            "exact_match_samples": len(got.cloze_acc), "exact_match_chunks": len(set(got.cloze_chunk)),
            "per_row": {"passage_loglik": got.passages_loglik, "passage_tokens": got.passages_tokens,
                        "cloze_acc": got.cloze_acc, **got.generation},
            "generation": {"openings": [{"chunk": r["chunk"], "prompt": r["prompt"], "continuation": c}
                                        for r, c in zip(task_rows.openings, got.continuations, strict=True)],
                           "new_tokens": harness.NEW_TOKENS, "decoding": "greedy"},
            "lm_eval": {**got.versions, **task, "aggregates": got.aggregates},
        }
        test = {**splits.describe("test"), "samples": len(rows), "indices_sha256": rows.indices_hash()}
        return Scores(metrics, len(rows), test, None, details)

    def gate_checks(self, model: Model, scores: Scores, ref_results: dict[str, Any]) -> list[dict[str, Any]]:
        """Checks beside the perplexity ratio, against the reference's results on the same rows: repetition may
        exceed the reference's by at most ``REPETITION_MARGIN``; the perplexity ratio's interval and the agreement
        of the continuations with the reference's (ROUGE-L) are recorded (informational)."""
        from zoo.lm import quality
        from zoo.lm.lm_eval_task.utils import rouge_l

        ref = (ref_results.get("details") or {})
        ref_rows, rows = ref.get("per_row") or {}, scores.details.get("per_row") or {}
        if "repeated_ngram_rate" not in ref_rows or "repeated_ngram_rate" not in rows:
            return [{"check": "repetition", "passed": False, "verdict": "no per-row values",
                     "what": "the reference has no per-opening repetition values: re-evaluate it with this zoo"}]
        rep = quality.paired_difference(rows["repeated_ngram_rate"], ref_rows["repeated_ngram_rate"])
        checks = [quality.margin_check(
            "repetition", rep, REPETITION_MARGIN,
            f"repeated word-trigram rate of greedy continuations minus the reference's (at most {REPETITION_MARGIN})")]
        ratio = quality.perplexity_ratio_interval(ref_rows["passage_loglik"], rows["passage_loglik"],
                                                  rows["passage_tokens"])
        checks.append({"check": "perplexity_ratio", "what": "reference perplexity ÷ this one's, paired by passage",
                       **ratio, "passed": True, "verdict": "informational"})
        ours = [o["continuation"] for o in scores.details["generation"]["openings"]]
        theirs = [o["continuation"] for o in ref["generation"]["openings"]]
        agree = quality.mean_interval([rouge_l(a, b) for a, b in zip(ours, theirs, strict=True)])
        checks.append({"check": "agreement", "what": "ROUGE-L of each continuation against the reference's",
                       **agree, "passed": True, "verdict": "informational"})
        return checks

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
