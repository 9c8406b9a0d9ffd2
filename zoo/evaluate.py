"""Evaluate built variants: task metrics on the test split, the accuracy gate, and performance on this machine.

What the metrics and the timed inputs are depends on the model's task and comes from its handler in ``zoo.tasks``
(accuracy / macro-F1 for text, top-1 for images, perplexity and next-word exact match for causal LMs); the gate, the
results.json layout, the machine fingerprint and the fresh process per performance run are the same for every task.
A lower-is-better gate metric (perplexity) is compared as reference / value, so a ratio below 1 is always worse.

Each variant's ``results.json`` sits beside its artifact. It is reused while its ``eval_hash`` — artifact hash,
evaluation spec, the gate reference's metrics, zoo version — is unchanged. References are evaluated before the
variants gated against them, so a gate always compares two results computed on the same test rows.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import zoo
from zoo import machine, metrics, perf, tasks
from zoo import progress as progress_mod
from zoo.plan import Node, digest, make
from zoo.registry import Loaded
from zoo.registry.schema import Device, Model
from zoo.status import read_results
from zoo.store import Store, write_json

# Bump when the meaning or layout of results.json changes, so every result is recomputed.
EVAL_FORMAT = 3


def evaluate(loaded: Loaded, store: Store, nodes: list[Node], force: bool = False, log=print) -> dict[str, dict]:
    """Evaluate each built node (unbuilt ones are skipped with a line saying so), gate references first.

    Args:
        nodes: the variants to evaluate, in plan order; a gate reference they need is added when it is built.
        force: re-evaluate even when the eval hash is unchanged.

    Returns:
        ``{node.key: results}`` for every node evaluated or reused, in evaluation order.

    Raises:
        ZooError: an artifact does not load or does not fit its dataset, or a performance run failed.
    """
    every = {n.key: n for n in make(loaded)}
    order = _order(loaded, store, nodes, every, log)
    results: dict[str, dict] = {}
    with store.lock(log=log), progress_mod.bar() as progress:
        overall = progress_mod.add(progress, "eval", len(order))
        for node in order:
            progress.update(overall, info=node.key)
            ref = _reference(loaded.model(node.model_id), node)
            ref_results = results.get(f"{node.model_id}:{ref}") if ref else None
            if ref and ref_results is None:
                ref_node = every[f"{node.model_id}:{ref}"]
                ref_results = read_results(store, ref_node)
            eh = eval_hash(loaded, node, ref, ref_results)
            existing = read_results(store, node)
            if existing and existing.get("eval_hash") == eh and not force:
                log(f"{node.key}: unchanged, results reused")
                results[node.key] = existing
            else:
                results[node.key] = _evaluate_one(loaded, store, node, ref, ref_results, eh,
                                                  lambda info: progress.update(overall, info=info), log)
            progress.advance(overall)
    return results


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

    Its type is the task's: a :class:`zoo.data.Split` of texts, a :class:`zoo.vision.data.ImageSplit`, or the
    held-out chunks of a causal-LM text (:class:`zoo.tasks.text_generation.TextRows`).
    """
    return tasks.handler(model.task).test_rows(model, loaded.root, f"models.{model_id}.dataset")


def _reference(model: Model, node: Node) -> str | None:
    """The variant ``node`` is gated against, or None (no gate, built from base, or it is the reference)."""
    gate = model.evaluation.gate
    if gate is None:
        return None
    ref = node.parent if gate.of == "parent" else gate.of
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
                  status, log) -> dict[str, Any]:
    model = loaded.model(node.model_id)
    handler = tasks.handler(model.task)
    ev = model.evaluation
    target = loaded.registry.targets[node.target]
    fp = machine.fingerprint()
    on_target, why = machine.matches(target, fp)
    device = "cuda" if target.device == Device.gpu and fp["gpu"] and handler.gpu else "cpu"
    field = f"models.{node.model_id}.dataset"
    artifact = store.artifact(node.hash)
    started = datetime.now(UTC)
    t0 = time.perf_counter()

    rows = handler.test_rows(model, loaded.root, field)
    log(f"evaluating {node.key} ({model.task}) on {len(rows)} test rows ({device})")
    scores = handler.evaluate(artifact, model, loaded.root, field, device, node.key)
    eval_seconds = time.perf_counter() - t0

    status(f"{node.key}: performance")
    measured = perf.measure(artifact, ev.batch_size, ev.seq_len, ev.repeats, device=device, task=model.task.value)
    note = (f"measured on target {node.target} ({fp['name']})" if on_target else
            f"not measured on target {node.target}; measured on {fp['name']} ({why})")
    results = {
        "model": node.model_id,
        "variant": node.variant_id,
        "kind": node.kind,
        "task": model.task.value,
        "target": node.target,
        "hash": node.hash,
        "eval_hash": eh,
        "metrics": scores.metrics,
        "samples": scores.samples,
        "seed": ev.seed,
        "test": scores.test,
        "kfold": scores.kfold,
        "details": scores.details,
        "gate": _gate(model, node, ref, ref_results, scores.metrics),
        "perf": {"measured_on": fp["name"], "on_target": on_target, "note": note, **measured},
        "machine": fp,
        "evaluated_at": started.isoformat(timespec="seconds"),
        "eval_seconds": round(eval_seconds, 2),
    }
    gate = results["gate"]
    if "ratio" in gate and (checks := handler.gate_checks(model, scores, ref_results or {})):
        gate["checks"] = checks
        gate["passed"] = gate["passed"] and all(c["passed"] for c in checks)
    write_json(store.results(node.hash), results)
    verdict = "no gate" if "ratio" not in gate else f"gate {'pass' if gate['passed'] else 'FAILED'} " \
                                                    f"({gate['ratio']:.4f} vs {gate['min_ratio']})"
    failed = [c["check"] for c in gate.get("checks", []) if not c["passed"]]
    verdict += f"; failed checks: {', '.join(failed)}" if failed else ""
    log(f"{node.key}: {', '.join(f'{k}={v:.4f}' for k, v in scores.metrics.items())}; {verdict}")
    return results


def _gate(model: Model, node: Node, ref: str | None, ref_results: dict | None, scores: dict[str, float]) -> dict:
    gate = model.evaluation.gate
    if gate is None:
        return {"passed": True, "reason": "no gate declared in evaluation.gate"}
    if ref is None:
        why = "built from base: no parent variant to compare with" if gate.of == "parent" else \
            f"{node.variant_id} is the gate's reference"
        return {"passed": True, "reason": why}
    metric = (gate.metric or model.evaluation.metrics[0]).value
    if ref_results is None or metric not in ref_results.get("metrics", {}):
        # fail closed: a variant whose reference has no result cannot show it kept the reference's quality
        return {"metric": metric, "of": ref, "passed": False, "min_ratio": gate.min_ratio,
                "reason": f"reference '{ref}' has no evaluated {metric}: build and evaluate "
                          f"{node.model_id}:{ref} first"}
    value, reference = scores[metric], float(ref_results["metrics"][metric])
    r = metrics.ratio(metric, value, reference)
    return {"metric": metric, "of": ref, "value": value, "reference": reference, "ratio": round(r, 6),
            "min_ratio": gate.min_ratio, "passed": r >= gate.min_ratio}
