"""Evaluate built variants: task metrics on the test split, the accuracy gate, and performance on this machine.

What the metrics and the timed inputs are depends on the model's task and comes from its family in ``zoo/families``
(accuracy / macro-F1 for text, top-1 for images, perplexity and next-word exact match for causal LMs); the gate, the
results.json layout, the machine fingerprint and the fresh process per performance run are the same for every task.
A lower-is-better gate metric (perplexity) is compared as reference / value, so a ratio below 1 is always worse.

Every per-row metric carries a 95% bootstrap interval and the gate is paired and non-inferior (``zoo.metrics``):
it passes on the lower bound of the ratio's interval and otherwise says "worse" or "not enough evidence". Speed is
timed after the metrics, for all the family's variants evaluated together, interleaved (``zoo.perf``); a noisy
figure is marked so. ``perf_only`` (``zoo eval --perf``) re-times already evaluated variants and keeps their metrics.

Each variant's ``results.json`` sits beside its artifact. It is reused while its ``eval_hash`` — artifact hash,
evaluation spec, the gate reference's metrics, zoo version — is unchanged. References are evaluated before the
variants gated against them, so a gate always compares two results computed on the same test rows.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import zoo
from zoo import machine, metrics, perf, verify
from zoo import progress as progress_mod
from zoo.families import family_of
from zoo.plan import Node, digest, make
from zoo.registry import Loaded
from zoo.registry.schema import Device, Model
from zoo.status import read_results
from zoo.store import Store, write_json

# Bump when the meaning or layout of results.json changes, so every result is recomputed.
EVAL_FORMAT = 3


def evaluate(loaded: Loaded, store: Store, nodes: list[Node], force: bool = False, log=print,
             perf_only: bool = False) -> dict[str, dict]:
    """Evaluate each built node (unbuilt ones are skipped with a line saying so), gate references first.

    Args:
        nodes: the variants to evaluate, in plan order; a gate reference they need is added when it is built.
        force: re-evaluate even when the eval hash is unchanged.
        perf_only: keep every stored metric and gate; re-time the evaluated variants only.

    Returns:
        ``{node.key: results}`` for every node evaluated or reused, in evaluation order.

    Raises:
        ZooError: an artifact does not load or does not fit its dataset, or a performance run failed.
    """
    every = {n.key: n for n in make(loaded)}
    order = _order(loaded, store, nodes, every, log)
    results: dict[str, dict] = {}
    to_time: list[Node] = []
    with store.lock(log=log), progress_mod.bar() as progress:
        overall = progress_mod.add(progress, "eval", len(order))
        for node in order:
            progress.update(overall, info=node.key)
            ref = _reference(loaded.model(node.model_id), node)
            ref_results = results.get(f"{node.model_id}:{ref}") if ref else None
            if ref and ref_results is None:
                ref_node = every[f"{node.model_id}:{ref}"]
                ref_results = read_results(store, ref_node)
            verify.artifact(store, node)
            eh = eval_hash(loaded, node, ref, ref_results)
            existing = read_results(store, node) if (perf_only or not force) else None
            if perf_only:
                if existing is None:
                    log(f"{node.key}: not evaluated yet, skipped (run `zoo eval {node.key}` first)")
                else:
                    results[node.key] = existing
                    to_time.append(node)
            elif existing and existing.get("eval_hash") == eh and not force and existing.get("perf"):
                log(f"{node.key}: unchanged, results reused")
                results[node.key] = existing
            else:
                results[node.key] = _evaluate_one(loaded, store, node, ref, ref_results, eh, log)
                to_time.append(node)
            progress.advance(overall)
        for model_id in dict.fromkeys(n.model_id for n in to_time):
            family = [n for n in order if n.model_id == model_id and n.key in results]
            _time_family(loaded, store, model_id, family, results, log)
    return results


def _time_family(loaded: Loaded, store: Store, model_id: str, family: list[Node], results: dict[str, dict],
                 log) -> None:
    """Time every evaluated variant of a family in one interleaved session and store each one's perf figures.

    The whole family is re-timed, not just the variants that changed, so every ratio in its table comes from
    one session on one machine state.
    """
    model = loaded.model(model_id)
    ev = model.evaluation
    gpu = family_of(model.task).gpu
    fp = machine.fingerprint()
    items = []
    for node in family:
        target = loaded.registry.targets[node.target]
        device = "cuda" if target.device == Device.gpu and fp["gpu"] and gpu else "cpu"
        items.append(perf.Item(node.key, store.artifact(node.hash), model.task, device))
    log(f"{model_id}: timing {len(items)} variants interleaved, {perf.ROUNDS} rounds, a fresh process each")
    session = datetime.now(UTC).isoformat(timespec="seconds")
    measured = perf.measure_family(items, ev.batch_size, ev.seq_len, ev.repeats, log=log)
    for node in family:
        target = loaded.registry.targets[node.target]
        on_target, why = machine.matches(target, fp)
        note = (f"measured on target {node.target} ({fp['name']})" if on_target else
                f"not measured on target {node.target}; measured on {fp['name']} ({why})")
        figures = measured[node.key]
        res = results[node.key]
        res["perf"] = {"measured_on": fp["name"], "on_target": on_target, "note": note, "session": session,
                       **figures}
        res["machine"] = fp
        write_json(store.results(node.hash), res)
        log(f"{node.key}: p50 batch 1 {perf.label(figures)}, batch {ev.batch_size} {perf.label(figures, 'batch_N')}"
            + (f" — {figures['noisy_reason']}" if figures["noisy"] else ""))


def eval_hash(loaded: Loaded, node: Node, ref: str | None, ref_results: dict | None) -> str:
    """What an evaluation depends on; the same hash means the stored results still hold."""
    return digest({
        "artifact": node.hash,
        "evaluation": loaded.model(node.model_id).evaluation.model_dump(mode="json"),
        "reference": {"variant": ref, "metrics": (ref_results or {}).get("metrics")} if ref else None,
        "zoo": zoo.__version__,
        "format": EVAL_FORMAT,
    })[:16]


def eval_rows(model: Model, loaded: Loaded, model_id: str) -> Any:
    """The declared test split, capped at ``evaluation.samples`` rows chosen with ``evaluation.seed``.

    Its type is the task's: a :class:`zoo.data.Split` of texts, an
    :class:`~zoo.families.image_classification.data.ImageSplit`, or the
    held-out chunks of a causal-LM text (:class:`zoo.families.text_generation.family.TextRows`).
    """
    return family_of(model.task).test_rows(model, loaded.root, f"models.{model_id}.dataset")


def _reference(model: Model, node: Node) -> str | None:
    """The variant ``node`` is gated against, or None (no gate, built from base, or it is the reference)."""
    gate = model.evaluation.gate
    if gate is None:
        return None
    ref = model.variants[node.variant_id].gate_of or (node.parent if gate.of == "parent" else gate.of)
    return None if ref in ("base", node.variant_id) else ref


def _order(loaded: Loaded, store: Store, nodes: list[Node], every: dict[str, Node], log) -> list[Node]:
    """Built nodes with each gate reference before the variants gated against it."""
    out: list[Node] = []
    seen: set[str] = set()

    def visit(node: Node) -> None:
        if node.key in seen:
            return
        seen.add(node.key)
        ref = _reference(loaded.model(node.model_id), node)
        ref_node = every.get(f"{node.model_id}:{ref}") if ref else None
        if ref_node is not None and store.is_built(ref_node.hash):
            visit(ref_node)
        out.append(node)

    for node in nodes:
        if not store.is_built(node.hash):
            log(f"{node.key}: not built, skipped (run `zoo build {node.key}`)")
            continue
        visit(node)
    return out


def _evaluate_one(loaded: Loaded, store: Store, node: Node, ref: str | None, ref_results: dict | None, eh: str,
                  log) -> dict[str, Any]:
    """Task metrics, their intervals and the gate; results.json is written without perf (timed per family)."""
    model = loaded.model(node.model_id)
    family = family_of(model.task)
    ev = model.evaluation
    target = loaded.registry.targets[node.target]
    fp = machine.fingerprint()
    device = "cuda" if target.device == Device.gpu and fp["gpu"] and family.gpu else "cpu"
    field = f"models.{node.model_id}.dataset"
    artifact = store.artifact(node.hash)
    started = datetime.now(UTC)
    t0 = time.perf_counter()

    rows = family.test_rows(model, loaded.root, field)
    log(f"evaluating {node.key} ({model.task}) on {len(rows)} test rows ({device})")
    scores = family.evaluate(artifact, model, loaded.root, field, device, node.key)
    eval_seconds = time.perf_counter() - t0
    intervals = {**scores.intervals, **_intervals(scores, ev.seed)}
    results = {
        "model": node.model_id,
        "variant": node.variant_id,
        "kind": node.kind,
        "task": model.task,
        "target": node.target,
        "hash": node.hash,
        "eval_hash": eh,
        "metrics": scores.metrics,
        "intervals": intervals,
        "samples": scores.samples,
        "seed": ev.seed,
        "test": scores.test,
        "kfold": scores.kfold,
        "details": scores.details,
        "gate": _gate(model, node, ref, ref_results, scores.metrics, scores.predictions, scores.test),
        "predictions": scores.predictions,
        "perf": None,
        "machine": fp,
        "evaluated_at": started.isoformat(timespec="seconds"),
        "eval_seconds": round(eval_seconds, 2),
    }
    gate = results["gate"]
    if "ratio" in gate and (checks := family.gate_checks(model, scores, ref_results or {})):
        gate["checks"] = checks
        if not all(c["passed"] for c in checks) and gate["passed"]:
            gate["passed"], gate["verdict"] = False, "failed checks"
    write_json(store.results(node.hash), results)
    failed = [c["check"] for c in gate.get("checks", []) if not c["passed"]]
    log(f"{node.key}: {', '.join(_with_interval(k, v, intervals) for k, v in scores.metrics.items())} "
        f"on {scores.samples} rows; {gate_text(gate)}" + (f"; failed checks: {', '.join(failed)}" if failed else ""))
    return results


def _intervals(scores: Any, seed: int) -> dict[str, dict]:
    """95% intervals of the per-row metrics (``zoo.metrics.interval``); others have none."""
    pred = scores.predictions
    if not pred:
        return {}
    return {name: metrics.interval(name, pred["labels"], pred["preds"], pred.get("n_classes"), seed)
            for name in scores.metrics if metrics.spec(name).per_row}


def _with_interval(name: str, value: float, intervals: dict) -> str:
    iv = intervals.get(name)
    return f"{name}={value:.4f}" + (f" [{iv['low']:.4f}, {iv['high']:.4f}]" if iv else "")


def gate_text(gate: dict) -> str:
    """The gate in one line: "pass 0.998 [0.991, 1.005] ≥ 0.99 of fp32", "worse …", "not enough evidence …"."""
    if "ratio" not in gate:
        return "no gate" if gate.get("passed", True) else f"gate FAILED: {gate.get('reason', '')}"
    iv = gate.get("interval")
    where = f" [{iv['low']:.4f}, {iv['high']:.4f}]" if iv else ""
    word = "pass" if gate["passed"] else gate.get("verdict", "FAILED")
    return f"gate {word}: ratio {gate['ratio']:.4f}{where} vs {gate['min_ratio']} of {gate['of']}"


def _gate(model: Model, node: Node, ref: str | None, ref_results: dict | None, scores: dict[str, float],
          predictions: dict | None = None, test: dict | None = None) -> dict:
    """Non-inferiority against the reference: paired bootstrap of the ratio when both have per-row predictions on
    the same rows (the gate passes on its lower bound), else the point ratio with the reason no interval exists."""
    gate = model.evaluation.gate
    if gate is None:
        return {"passed": True, "reason": "no gate declared in evaluation.gate"}
    if ref is None:
        why = "built from base: no parent variant to compare with" if gate.of == "parent" else \
            f"{node.variant_id} is the gate's reference"
        return {"passed": True, "reason": why}
    metric = model.evaluation.primary
    if ref_results is None or metric not in ref_results.get("metrics", {}):
        # fail closed: a variant whose reference has no result cannot show it kept the reference's quality
        return {"metric": metric, "of": ref, "passed": False, "min_ratio": gate.min_ratio,
                "reason": f"reference '{ref}' has no evaluated {metric}: build and evaluate "
                          f"{node.model_id}:{ref} first"}
    value, reference = scores[metric], float(ref_results["metrics"][metric])
    r = metrics.ratio(metric, value, reference)
    out: dict[str, Any] = {"metric": metric, "of": ref, "value": value, "reference": reference,
                           "ratio": round(r, 6), "min_ratio": gate.min_ratio}
    ref_pred = ref_results.get("predictions")
    same_rows = (test or {}).get("indices_sha256") == (ref_results.get("test") or {}).get("indices_sha256")
    if metrics.spec(metric).per_row and predictions and ref_pred and same_rows:
        cmp = metrics.compare(metric, predictions["labels"], predictions["preds"], ref_pred["preds"],
                              predictions.get("n_classes"), model.evaluation.seed)
        v = metrics.verdict(cmp["ratio"]["low"], cmp["ratio"]["high"], gate.min_ratio)
        out.update({"interval": cmp["ratio"], "diff": cmp["diff"], "agreement": round(cmp["agreement"], 6),
                    "rows": cmp["rows"], "level": cmp["level"], "resamples": cmp["resamples"],
                    "method": cmp["method"], "verdict": v, "passed": v == "pass"})
        if v == "not enough evidence":
            out["reason"] = (f"the ratio's {cmp['level']:.0%} interval [{cmp['ratio']['low']:.4f}, "
                             f"{cmp['ratio']['high']:.4f}] straddles {gate.min_ratio}: more test rows "
                             f"(dataset.split.test) would decide")
        elif v == "worse":
            out["reason"] = f"the whole interval lies below {gate.min_ratio}"
        return out
    why = ("the metric has no per-row values" if not metrics.spec(metric).per_row else
           "the reference was scored on other rows or has no stored predictions: re-evaluate it")
    out.update({"passed": r >= gate.min_ratio, "verdict": "pass" if r >= gate.min_ratio else "worse",
                "interval": None, "reason": f"point ratio only: {why}"})
    return out
