"""lm-evaluation-harness helpers for a modelzoo text-generation task folder (copied there as ``utils.py``).

Self-contained on purpose: the folder a variant repo ships (task YAMLs + ``data.jsonl`` + this file) is rerun with
``lm_eval --include_path <folder>`` without modelzoo installed. modelzoo imports the same functions, so the zoo's
numbers and a user's rerun come from one implementation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).parent
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
REPEAT_N = 3  # repeated word n-gram rate over word trigrams ("most noble, most noble" repeats at once)
DISTINCT_N = 2  # distinct-n (Li et al., 2016) over word bigrams


def load(data_file: str = "data.jsonl", kind: str = "", **_: object):
    """The rows of ``data_file`` (beside this file) whose ``kind`` matches, as lm-eval's ``custom_dataset``."""
    import datasets

    rows = [json.loads(line) for line in (HERE / data_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["kind"] == kind]
    if not rows:
        raise ValueError(f"{HERE / data_file}: no row of kind '{kind}'")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (punctuation and numbers dropped): what the repetition metrics count."""
    return [w.lower() for w in WORD.findall(text)]


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_rate(text: str, n: int = REPEAT_N) -> float:
    """Share of the word n-grams of ``text`` that already occurred earlier in it (0: none repeats; 1 - 1/k for one
    n-gram said k times). A text with fewer than ``n`` words has none."""
    grams = _ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(text: str, n: int = DISTINCT_N) -> float:
    """Distinct word n-grams over all word n-grams of ``text`` (1: no n-gram repeats). A text with fewer than ``n``
    words scores 0: an empty answer is no better than a looping one."""
    grams = _ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else 0.0


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of ``prediction`` against ``reference`` (rouge-score, stemmed); 0 when either is empty."""
    from rouge_score import rouge_scorer

    if not prediction.strip() or not reference.strip():
        return 0.0
    return float(rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, prediction)["rougeL"].fmeasure)


def process_generation(doc: dict, results: list[str]) -> dict[str, float]:
    """Per-opening metrics of a greedy continuation: repetition, distinct-n and ROUGE-L against the held-out text."""
    text = results[0]
    return {"repeated_ngram_rate": repeated_ngram_rate(text), "distinct_2": distinct_n(text),
            "rouge_l": rouge_l(text, doc["reference"])}
