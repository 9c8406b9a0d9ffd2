"""What state a variant is in, read from the store: planned, built, evaluated (gate pass/fail)."""

from __future__ import annotations

import json

from zoo.plan import Node
from zoo.store import Store


def read_results(store: Store, node: Node) -> dict | None:
    path = store.results(node.hash)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def gate_passed(results: dict | None) -> bool | None:
    """True/False once evaluated; None before."""
    if results is None:
        return None
    return bool((results.get("gate") or {}).get("passed", True))


def variant_status(store: Store, node: Node) -> str:
    if not store.is_built(node.hash):
        return "planned"
    passed = gate_passed(read_results(store, node))
    if passed is None:
        return "built"
    return "evaluated, gate pass" if passed else "evaluated, GATE FAILED"
