"""What state a variant is in, read from the store: planned, built, evaluated (gate pass/fail)."""

from __future__ import annotations

from zoo import verify
from zoo.errors import ZooError
from zoo.plan import Node
from zoo.store import Store


def read_results(store: Store, node: Node) -> dict | None:
    """The variant's results.json, or None before it is evaluated.

    Raises:
        ZooError: the file is damaged, or it holds another variant's results (one line with the fix).
    """
    path = store.results(node.hash)
    if not path.exists():
        return None
    fix = f"run `zoo eval {node.key} --force`"
    results = verify.read_json(path, fix)
    if results.get("hash") != node.hash or results.get("variant") not in (None, node.variant_id) \
            or results.get("model") not in (None, node.model_id):
        raise ZooError(f"{path}: holds the results of {results.get('model')}:{results.get('variant')} "
                       f"build {results.get('hash')}, not of {node.key} build {node.hash}: {fix}")
    return results


def gate_passed(results: dict | None) -> bool | None:
    """True/False once evaluated; None before."""
    if results is None:
        return None
    return bool((results.get("gate") or {}).get("passed", True))


def variant_status(store: Store, node: Node) -> str:
    if not store.is_built(node.hash):
        return "planned"
    try:
        passed = gate_passed(read_results(store, node))
    except ZooError:
        return f"damaged results (zoo eval {node.key} --force)"
    if passed is None:
        return "built"
    return "evaluated, gate pass" if passed else "evaluated, GATE FAILED"
