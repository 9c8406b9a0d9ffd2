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
from zoo.families.base import Family, PerfModel, Scores, params_from_provenance, seeded_subset
from zoo.registry.schema import Model

GENERATION_OPENINGS = 40  # held-out openings continued greedily per variant (bf16/NF4 generation is slow on CPU)
REPETITION_MARGIN = 0.10  # a variant's repeated-trigram rate may exceed its reference's by at most this
PROMPT_WORDS = 8  # words of a held-out passage used as a prompt
SNIPPET_NEW_TOKENS = 32  # tokens a usage snippet generates
PROMPT_CHARS = 500  # input limit of the Space's prompt box
MAX_NEW_TOKENS = 128  # upper bound of the Space's new-tokens slider
DEFAULT_NEW_TOKENS = 48
SPACE_CONCURRENCY = 1  # one generation at a time: each already runs every variant, and CPU threads are shared
SPACE_QUEUE_SIZE = 16
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


class TextGeneration(Family):
    task = "text-generation"
    formats = ("transformers-causal-lm", "onnx-genai")
    metrics = ("perplexity", "exact_match")
    example_unit = "passages"
    space_intro = ("Type a prompt and every variant of `{model_id}` continues it, streamed side by side, each with its "
                   "time to first token and tokens per second on this Space's hardware (variants run one after "
                   "another, so each speed is its own).")
    auto_class = "AutoModelForCausalLM"
    limitations = ("A small language model: greedy answers can repeat themselves or state wrong facts; it was tuned "
                   "on the text above, not aligned for safety.",)

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        from zoo.families.text_generation.data import load_splits

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
        """Every metric through the project's lm-evaluation-harness task (:mod:`.harness`) on the held-out
        chunks: token perplexity of the passages, next-word accuracy (``exact_match``) on the cloze items, and the
        generation metrics of greedy continuations of ``GENERATION_OPENINGS`` openings, each with its interval."""
        from zoo.data import load_splits
        from zoo.families.text_generation import harness, quality

        ev = model.evaluation
        if ev.kfold:
            raise ZooError(f"{field.removesuffix('.dataset')}.evaluation.kfold: k-fold spread is computed for "
                           "classification only: remove kfold for text-generation")
        for metric in ev.metrics:
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
        from zoo.families.text_generation import quality
        from zoo.families.text_generation.lm_eval_task.utils import rouge_l

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

    def examples(self, model: Model, root: Path, field: str, n: int, max_chars: int = 300) -> list[str]:
        """Up to ``n`` prompts to continue: the opening ``PROMPT_WORDS`` words of held-out passages."""
        from zoo.data import load_splits

        prompts = [_opening(t, max_chars) for t in load_splits(model, root, field).test]
        out = list(dict.fromkeys(p for p in prompts if p))[:n]
        if not out:
            raise ZooError(f"{field}: no held-out passage has words to use as an example prompt")
        return out

    def recognises(self, config: dict[str, Any]) -> bool:
        return any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or [])

    def techniques(self) -> list[Any]:
        from zoo.families.text_generation import qlora
        from zoo.families.text_generation import techniques as t

        return [t.LmFinetune(), t.LmHalf(), t.LmGenai(), qlora.LmQlora(), t.LmDistill()]

    # ------------------------------------------------------------ card

    def usage_names(self, node: Any, fmt: str, art: Path | None, root: str | None) -> list[str]:
        from zoo.card import has_quantization

        if fmt == "onnx-genai" or (fmt != "transformers-causal-lm" and art is not None
                                   and (art / "genai_config.json").is_file()):
            return ["onnx-genai"]
        if node.kind == "qlora-4bit" or has_quantization(art):
            return ["causal-lm-4bit-adapter" if root == "nf4-base" else "causal-lm-4bit"]
        return ["causal-lm"]

    def adapter_usage_name(self, root: str | None) -> str:
        # an adapter trained on an NF4 root that is published beside it loads on that root, not on the upstream
        return "adapter-nf4-root" if root == "nf4-base" else "adapter-causal-lm"

    def snippet_values(self) -> dict[str, Any]:
        return {"new_tokens": SNIPPET_NEW_TOKENS}

    def format_tags(self, fmt: str) -> list[str]:
        return ["onnxruntime-genai"] if fmt == "onnx-genai" else []

    def card_section(self, loaded: Any, store: Any, node: Any, table: dict[str, Any], fmt: str) -> str:
        """Generation quality and the lm_eval command that reproduces the card's figures."""
        from zoo import plan
        from zoo.card import templates_dir
        from zoo.families.text_generation import card as lm_card
        from zoo.status import read_results

        nodes = [n for n in plan.make(loaded) if n.model_id == node.model_id]
        return lm_card.section([templates_dir(loaded), self.folder], node.model_id, node.variant_id,
                               table["reference"], fmt, {n.variant_id: read_results(store, n) for n in nodes},
                               REPETITION_MARGIN)

    def stage_card_files(self, loaded: Any, node: Any, art: Path, out: Path) -> None:
        """The lm-eval task folder the card's command runs."""
        from zoo.families.text_generation import harness

        model = loaded.model(node.model_id)
        rows = self.test_rows(model, loaded.root, f"models.{node.model_id}.dataset")
        harness.write_task(out / harness.TASK_DIR, harness.task_name(node.model_id),
                           harness.build_rows(rows.texts, GENERATION_OPENINGS))

    # ------------------------------------------------------------ Space

    space_packages = ("gradio", "huggingface_hub", "torch", "transformers", "accelerate")

    def space_spec(self, node: Any, art: Path, prov: dict[str, Any]) -> dict[str, Any]:
        from zoo.techniques._nf4 import ADAPTER_DIR

        fmt = "onnx-genai" if prov.get("format") == "onnx-genai" else "transformers-causal-lm"
        adapter = ADAPTER_DIR if prov.get("root") == "nf4-base" else None
        return {"format": fmt, "dtype": prov.get("dtype"), "adapter_subfolder": adapter,
                "max_length": prov.get("max_length")}

    def space_limits(self) -> dict[str, Any]:
        return {"max_chars": PROMPT_CHARS, "max_new_tokens": MAX_NEW_TOKENS, "default_new_tokens": DEFAULT_NEW_TOKENS,
                "queue_size": SPACE_QUEUE_SIZE, "concurrency": SPACE_CONCURRENCY}

    def space_files(self, loaded: Any, model_id: str, out: Path, config: dict[str, Any]) -> None:
        from zoo.families.text_classification.family import write_text_examples

        write_text_examples(self, loaded, model_id, out, PROMPT_CHARS)

    def space_requirements(self, specs: list[dict[str, Any]]) -> list[str]:
        from zoo.families.text_classification.family import extra_text_packages

        return [*self.space_packages, *extra_text_packages(specs)]

    # ------------------------------------------------------------ zoo pull

    def load_lines(self, folder: Path, fmt: str | None) -> list[str]:
        where = json.dumps(str(folder))
        if fmt == "onnx-genai":
            return ["import onnxruntime_genai as og", "from transformers import AutoTokenizer",
                    f"model, tokenizer = og.Model({where}), AutoTokenizer.from_pretrained({where})"]
        return super().load_lines(folder, fmt)


def _opening(text: str, max_chars: int) -> str:
    words = " ".join(text.split()).split(" ")[:PROMPT_WORDS]
    while words and len(" ".join(words)) > max_chars:
        words.pop()
    return " ".join(words)


def load(artifact_dir: Path) -> Any:
    """The artifact's :class:`.Generator`, with torch and ONNX Runtime using ``zoo.formats.threads()``.

    Raises:
        ZooError: the folder is not a causal-LM artifact or does not load.
    """
    from zoo.families.text_generation.generator import load_generator
    from zoo.formats import set_threads, threads

    set_threads()
    try:
        return load_generator(artifact_dir, threads=threads())
    except (OSError, ValueError, RuntimeError, ImportError) as e:
        raise ZooError(f"{artifact_dir}: cannot load the causal LM: {str(e).splitlines()[0]}") from e


FAMILY = TextGeneration()
