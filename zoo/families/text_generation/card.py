"""The text-generation family's card section: the family's generation-quality table with intervals, an example
continuation per variant and the ``lm_eval`` command that reruns the project's task on the variant's repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.families.text_generation import harness

ONNX_SNIPPET = """from pathlib import Path

from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from transformers import AutoTokenizer
# pip install modelzoo: HFLM's view of an onnxruntime-genai model
from zoo.families.text_generation.genai import ForHFLM, GenaiModel

lm = HFLM(pretrained=ForHFLM(GenaiModel(Path("."))), tokenizer=AutoTokenizer.from_pretrained("."), batch_size=4)
out = simple_evaluate(model=lm, tasks=["{name}"], task_manager=TaskManager(include_path="lm_eval_task"))
print(out["results"])"""
EXAMPLE_CHARS = 300  # a continuation shown on the card is cut to this many characters


def _fmt(iv: dict[str, Any] | None, digits: int = 3) -> str:
    if not iv:
        return "—"
    lo, hi = iv["ci"]
    return f"{iv['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _gate(r: dict[str, Any] | None) -> str:
    if r is None:
        return "not evaluated"
    gate = r.get("gate") or {}
    if gate.get("passed", True):
        return "pass"
    failed = [c["check"] + (f" ({c['verdict']})" if c.get("verdict") != "fail" else "")
              for c in gate.get("checks", []) if not c.get("passed")]
    if "ratio" in gate and gate["ratio"] < gate.get("min_ratio", 0):
        failed.insert(0, f"perplexity ratio {gate['ratio']:.3f} < {gate['min_ratio']}")
    return "**FAIL**: " + ", ".join(failed) if failed else "**FAIL**"


def section(templates: list[Path], model_id: str, variant_id: str, reference: str | None, fmt: str,
            results: dict[str, dict[str, Any] | None], margin: float) -> str:
    """The markdown section for one variant's card; ``results`` maps every variant of the family to its
    results.json (None when not evaluated)."""
    import jinja2

    rows, examples = [], []
    first = next((r for r in results.values() if r and (r.get("details") or {}).get("generation")), None)
    for variant, r in results.items():
        details = (r or {}).get("details") or {}
        iv = details.get("intervals") or {}
        checks = {c["check"]: c for c in ((r or {}).get("gate") or {}).get("checks", [])}
        rows.append({"variant": variant, **{m: _fmt(iv.get(m), 1 if m == "perplexity" else 3)
                                            for m in ("perplexity", "exact_match", "repeated_ngram_rate",
                                                      "distinct_2", "rouge_l")},
                     "agreement": "1 (reference)" if variant == reference and r else _fmt(checks.get("agreement")),
                     "gate": _gate(r)})
        openings = (details.get("generation") or {}).get("openings") or []
        if openings:
            text = openings[0]["continuation"].strip()
            examples.append({"variant": variant, "text": text[:EXAMPLE_CHARS] + ("…" if len(text) > EXAMPLE_CHARS
                                                                                    else "")})
    if first is None:
        return ""
    d = first["details"]
    lm = d["lm_eval"]
    name = lm["group"]
    command, lang, note = f"pip install lm-eval=={lm['lm_eval']}\n" + harness.command(".", name), "bash", ""
    if fmt == "onnx-genai":
        lang = "python"
        command = ONNX_SNIPPET.format(name=name)
        note = (f"`lm_eval --model hf` loads PyTorch weights only; this ONNX Runtime variant goes through the same "
                f"`HFLM` class from Python (with lm-eval {lm['lm_eval']} and modelzoo installed), as `zoo eval` "
                "runs it.")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template("text_generation.md.j2").render(
        cloze_per_chunk=harness.CLOZE_PER_CHUNK, lm_eval_version=lm["lm_eval"], passages=lm["rows"]["passages"],
        cloze=lm["rows"]["cloze"],
        openings=lm["rows"]["openings"], new_tokens=lm["new_tokens"], reference=reference or "fp32",
        margin=margin, rows=rows, variant_id=variant_id, examples=examples,
        example_prompt=d["generation"]["openings"][0]["prompt"], command=command, command_lang=lang,
        command_note=note)
