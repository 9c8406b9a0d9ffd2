"""`zoo run`: every stage for the selected models, each incremental, ending with the push."""

from __future__ import annotations

import time

from zoo import ids, plan, verify
from zoo.errors import ZooError
from zoo.registry import Loaded
from zoo.store import Store


def run(loaded: Loaded, store: Store, selector: str | None, hub: str = "local", allow_gate_failure: bool = False,
        all_models: bool = False, console=None, log=print, executor: str = "local", address: str | None = None,
        hub_cache: str | None = None) -> dict[str, float]:
    """Build → evaluate → report → card → space → push; returns the seconds each stage took.

    Raises:
        ZooError: from the first stage that fails; what earlier stages finished stays done.
    """
    from zoo import card, report, space
    from zoo import hub as hub_mod

    model, variant = ids.parse_selector(selector)
    pairs = loaded.select(model, variant, include_nondefault=all_models)
    nodes = plan.select(plan.make(loaded), pairs)
    models = list(dict.fromkeys(n.model_id for n in nodes))
    seconds: dict[str, float] = {}

    def stage(name: str, fn):
        log(f"── {name}")
        t = time.perf_counter()
        result = fn()
        seconds[name] = time.perf_counter() - t
        return result

    stage("build", lambda: build_stage(loaded, store, nodes, log=log, executor=executor, address=address,
                                       hub_cache=hub_cache))
    stage("evaluate", lambda: eval_stage(loaded, store, nodes, log=log, executor=executor, address=address))
    stage("report", lambda: report.report(loaded, store, models, as_json=False, console=console))
    stage("card", lambda: card.write_cards(loaded, store, nodes))
    stage("space", lambda: [space.render(loaded, store, m) for m in models])
    stage("verify", lambda: verify.before_push(store, nodes, allow_gate_failure))
    stage("push", lambda: hub_mod.push(loaded, store, nodes, hub=hub, dry_run=False,
                                       allow_gate_failure=allow_gate_failure, console=console))
    log("done: " + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
    return seconds


def build_stage(loaded: Loaded, store: Store, nodes, force: bool = False, log=print, executor: str = "local",
                address: str | None = None, hub_cache: str | None = None):
    """Build in this process or, with ``executor="ray"``, as tasks on a Ray cluster (zoo/cluster.py)."""
    if executor == "ray":
        from zoo import cluster

        return cluster.build(loaded, store, nodes, address=address, force=force, log=log, hub_cache=hub_cache)
    from zoo import build
    from zoo import hub_cache as hub_cache_mod

    if hub_cache and not force:
        hub_cache_mod.prefetch(loaded, store, nodes, hub_cache, log=log)
    return build.build(loaded, store, nodes, force=force, log=log)


def eval_stage(loaded: Loaded, store: Store, nodes, force: bool = False, log=print, executor: str = "local",
               address: str | None = None, perf_only: bool = False):
    if executor == "ray":
        if perf_only:
            raise ZooError("--perf times a family interleaved on this machine: run it without --executor ray")
        from zoo import cluster

        return cluster.evaluate(loaded, store, nodes, address=address, force=force, log=log)
    from zoo import evaluate

    return evaluate.evaluate(loaded, store, nodes, force=force, log=log, perf_only=perf_only)
