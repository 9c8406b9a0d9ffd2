"""The text-generation family's lm-evaluation-harness task: held-out passages, a cloze task and continuations.

:func:`write_task` writes a self-contained task folder — a group YAML, one YAML per task, ``data.jsonl`` and
``utils.py`` (from ``lm_eval_task/`` here) — that ``lm_eval --include_path FOLDER --tasks NAME`` runs on any
variant. :func:`run` evaluates a loaded :class:`.Generator` on it through lm-eval's own ``HFLM`` and
``simple_evaluate``, and returns lm-eval's aggregates plus the per-row values that intervals are computed from.

Tasks (``<name>`` is the model id with ``-`` turned into ``_``):
- ``<name>_passages`` (``loglikelihood_rolling``): each held-out chunk scored whole; word/byte perplexity, bits per
  byte; the zoo's token perplexity divides the same log-likelihoods by the tokens.
- ``<name>_cloze`` (``loglikelihood``, as LAMBADA): the middle word of up to ``CLOZE_PER_CHUNK`` lines of each chunk,
  after the passage up to it; ``acc`` is 1 when greedy decoding reproduces the word exactly (next-word accuracy).
- ``<name>_continue`` (``generate_until``, greedy): the opening words of held-out chunks continued for a fixed number
  of tokens; repeated word-trigram rate, distinct-2 and ROUGE-L against the held-out rest.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ZooError
from zoo.families.text_generation.lm_eval_task import utils as task_utils

TASK_FILES = Path(__file__).parent / "lm_eval_task"
DATA_FILE = "data.jsonl"
TASK_DIR = "lm_eval_task"  # the task folder's name in a variant repo
PROMPT_WORDS = 12  # words of a held-out chunk given as the opening to continue
NEW_TOKENS = 48  # greedy tokens generated per opening
MIN_CLOZE_WORDS = 3  # a line needs this many words to give a cloze item (its middle word)
CLOZE_PER_CHUNK = 4  # at most this many cloze items per chunk, from lines spread over it


@dataclass
class TaskRows:
    """The rows of one task folder: passages, cloze items and openings (each a dict with ``kind``)."""

    passages: list[dict[str, str]]
    cloze: list[dict[str, Any]]
    openings: list[dict[str, Any]]

    def all(self) -> list[dict[str, Any]]:
        return [*self.passages, *self.cloze, *self.openings]


@dataclass
class HarnessResult:
    """What one lm-eval run gave: aggregates per task and per-row values (in row order) for intervals."""

    aggregates: dict[str, dict[str, float]]  # task -> lm-eval metric -> value
    passages_loglik: list[float]  # total log-likelihood of each passage
    passages_tokens: list[int]  # tokens of each passage (what the model predicted)
    cloze_acc: list[float]  # 1.0 / 0.0 per cloze item
    cloze_chunk: list[int]  # the passage number each cloze item came from
    continuations: list[str]  # greedy continuation of each opening
    generation: dict[str, list[float]] = field(default_factory=dict)  # metric -> per-opening value
    versions: dict[str, Any] = field(default_factory=dict)


def task_name(model_id: str) -> str:
    """The lm-eval group name of a model's task (lm-eval names are identifiers)."""
    return re.sub(r"\W", "_", model_id)


def build_rows(texts: Sequence[str], openings: int) -> TaskRows:
    """Rows for ``texts`` (held-out chunks): every chunk as a passage and as cloze items, the first ``openings``
    chunks with at least ``PROMPT_WORDS + 4`` words as openings (their first words) with the rest as reference.
    """
    passages = [{"kind": "passage", "chunk": i, "text": t} for i, t in enumerate(texts)]
    cloze: list[dict[str, Any]] = []
    opening_rows: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        items, offset = [], 0
        for line in text.split("\n"):
            found = list(task_utils.WORD.finditer(line))
            if offset and len(found) >= MIN_CLOZE_WORDS:  # the first line has no passage before it
                word = found[len(found) // 2]
                items.append({"kind": "cloze", "chunk": i,
                              "context": text[: offset + word.start()].rstrip(" "), "target": word.group()})
            offset += len(line) + 1
        step = max(1, math.ceil(len(items) / CLOZE_PER_CHUNK))
        cloze += items[::step]
        found = list(task_utils.WORD.finditer(text))
        if len(opening_rows) < openings and len(found) >= PROMPT_WORDS + 4:
            cut = found[PROMPT_WORDS - 1].end()
            opening_rows.append({"kind": "opening", "chunk": i, "prompt": text[:cut], "reference": text[cut:]})
    return TaskRows(passages, cloze, opening_rows)


class _FunctionTag(str):
    """A YAML scalar written with lm-eval's ``!function`` tag."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FunctionTag, lambda d, v: d.represent_scalar("!function", str(v)))


def task_configs(name: str, new_tokens: int = NEW_TOKENS) -> dict[str, dict[str, Any]]:
    """The YAML documents of the task folder, by file stem."""
    def data(kind: str) -> dict[str, Any]:
        return {"custom_dataset": _FunctionTag("utils.load"),
                "dataset_kwargs": {"data_file": DATA_FILE, "kind": kind}, "test_split": "test"}

    meta = {"version": 1.0, "source": "modelzoo"}
    return {
        f"{name}_passages": {
            "task": f"{name}_passages", **data("passage"), "output_type": "loglikelihood_rolling",
            "doc_to_text": "", "doc_to_target": "{{text}}",
            "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
            "metadata": meta},
        f"{name}_cloze": {
            "task": f"{name}_cloze", **data("cloze"), "output_type": "loglikelihood",
            "doc_to_text": "{{context}}", "doc_to_target": "{{' ' + target}}",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False}],
            "metadata": meta},
        f"{name}_continue": {
            "task": f"{name}_continue", **data("opening"), "output_type": "generate_until",
            "doc_to_text": "{{prompt}}", "doc_to_target": "{{reference}}", "target_delimiter": "",
            "generation_kwargs": {"until": [], "max_gen_toks": new_tokens, "do_sample": False},
            "process_results": _FunctionTag("utils.process_generation"),
            "metric_list": [{"metric": "repeated_ngram_rate", "aggregation": "mean", "higher_is_better": False},
                            {"metric": "distinct_2", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "rouge_l", "aggregation": "mean", "higher_is_better": True}],
            "metadata": meta},
        name: {"group": name, "task": [f"{name}_passages", f"{name}_cloze", f"{name}_continue"],
               "metadata": {"version": 1.0}},
    }


def write_task(folder: Path, name: str, rows: TaskRows, new_tokens: int = NEW_TOKENS) -> dict[str, Any]:
    """Write the task folder (YAMLs, ``data.jsonl``, ``utils.py``) and return what provenance records of it."""
    folder.mkdir(parents=True, exist_ok=True)
    configs = task_configs(name, new_tokens)
    for stem, doc in configs.items():
        (folder / f"{stem}.yaml").write_text(
            "# generated by modelzoo (zoo/families/text_generation/harness.py) — do not edit\n"
            + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True))
    with (folder / DATA_FILE).open("w", encoding="utf-8") as f:
        for row in rows.all():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    shutil.copyfile(TASK_FILES / "utils.py", folder / "utils.py")
    import hashlib

    return {"group": name, "tasks": [k for k in configs if k != name],
            "rows": {"passages": len(rows.passages), "cloze": len(rows.cloze), "openings": len(rows.openings)},
            "new_tokens": new_tokens, "decoding": "greedy",
            "data_sha256": hashlib.sha256((folder / DATA_FILE).read_bytes()).hexdigest()[:16],
            "configs": {k: json.loads(json.dumps(v)) for k, v in configs.items()}}


def lm_eval_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        raise ZooError("lm-eval is not installed: run `pip install -e .` (it is a dependency of modelzoo)") from None


def command(model_dir: str, name: str, folder: str = TASK_DIR, batch_size: int = 4) -> str:
    """The ``lm_eval`` command line that reruns the task on a variant folder (transformers formats)."""
    return (f"lm_eval --model hf --model_args pretrained={model_dir},dtype=auto --device cpu "
            f"--batch_size {batch_size} --include_path {folder} --tasks {name}")


def run(gen: Any, folder: Path, name: str, batch_size: int, log_path: Path | None = None) -> HarnessResult:
    """Evaluate ``gen`` (a :class:`.Generator`) on the task folder with lm-eval's HFLM and simple_evaluate.

    lm-eval's logging and progress bars go to ``log_path`` (or nowhere), not the console.

    Raises:
        ZooError: lm-eval cannot load the task or the model, or a task gives no row.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    version = lm_eval_version()
    sink = log_path.open("a", encoding="utf-8") if log_path else io.StringIO()
    handler = logging.StreamHandler(sink)
    loggers = [logging.getLogger(n) for n in ("lm-eval", "lm_eval", "lm-evaluation-harness")]
    saved = [(lg.handlers, lg.propagate, lg.level) for lg in loggers]
    try:
        for lg in loggers:
            lg.handlers, lg.propagate = [handler], False
        with warnings.catch_warnings(), contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            if gen.runtime == "onnxruntime-genai":
                from zoo.families.text_generation.genai import ForHFLM

                model = ForHFLM(gen.model)
            else:
                model = gen.model
            lm = HFLM(pretrained=model, tokenizer=gen.tokenizer, batch_size=batch_size)
            out = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=TaskManager(include_path=str(folder)),
                                          log_samples=True, bootstrap_iters=0, random_seed=0,
                                          numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    except (ValueError, KeyError, OSError, RuntimeError, TypeError, AssertionError) as e:
        raise ZooError(f"lm-eval {version} could not run task '{name}' from {folder}: "
                       f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    finally:
        for lg, (h, p, lv) in zip(loggers, saved, strict=True):
            lg.handlers, lg.propagate, lg.level = h, p, lv
        if log_path:
            sink.close()
    samples = out.get("samples") or {}

    def rows(task: str) -> list[dict[str, Any]]:
        got = sorted(samples.get(task) or [], key=lambda s: s["doc_id"])
        if not got:
            raise ZooError(f"lm-eval task '{task}' in {folder} gave no row: check {DATA_FILE}")
        return got

    passages, cloze, cont = rows(f"{name}_passages"), rows(f"{name}_cloze"), rows(f"{name}_continue")
    loglik = [float(s["word_perplexity"][0]) for s in passages]
    tokens = [len(lm.tok_encode(s["doc"]["text"])) for s in passages]
    texts = [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"] for s in cont]
    aggregates = {task: {k.split(",")[0]: float(v) for k, v in res.items()
                         if isinstance(v, int | float) and not k.endswith("_stderr,none") and "," in k}
                  for task, res in (out.get("results") or {}).items()}
    return HarnessResult(
        aggregates=aggregates, passages_loglik=loglik, passages_tokens=tokens,
        cloze_acc=[float(s["acc"]) for s in cloze], cloze_chunk=[int(s["doc"]["chunk"]) for s in cloze],
        continuations=[str(t) for t in texts],
        generation={m: [float(s[m]) for s in cont] for m in ("repeated_ngram_rate", "distinct_2", "rouge_l")},
        versions={"lm_eval": version, "task_version": 1.0})


def token_perplexity(loglik: Sequence[float], tokens: Sequence[int]) -> float:
    """exp(−Σ log-likelihood / Σ tokens): the token perplexity of passages scored whole."""
    count = sum(tokens)
    if count == 0:
        raise ZooError("perplexity: the passages have no token: check the dataset split")
    value = math.exp(-sum(loglik) / count)
    if not math.isfinite(value):
        raise ZooError(f"perplexity is {value}: the model gives non-finite log-likelihoods")
    return value
