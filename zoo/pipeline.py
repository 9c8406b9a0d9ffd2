"""`zoo run`: every stage for the selected models, each incremental, ending with the push."""

from __future__ import annotations

import time

from zoo import ids, plan, verify
from zoo.registry import Loaded
from zoo.store import Store


def run(loaded: Loaded, store: Store, selector: str | None, hub: str = "local", allow_gate_failure: bool = False,
        all_models: bool = False, console=None, log=print) -> dict[str, float]:
    """Build → evaluate → report → card → space → push; returns the seconds each stage took.

    Raises:
        ZooError: from the first stage that fails; what earlier stages finished stays done.
    """
    from zoo import build, card, evaluate, report, space
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

    stage("build", lambda: build.build(loaded, store, nodes, log=log))
    stage("evaluate", lambda: evaluate.evaluate(loaded, store, nodes, log=log))
    stage("report", lambda: report.report(loaded, store, models, as_json=False, console=console))
    stage("card", lambda: card.write_cards(loaded, store, nodes))
    stage("space", lambda: [space.render(loaded, store, m) for m in models])
    stage("verify", lambda: verify.before_push(store, nodes, allow_gate_failure))
    stage("push", lambda: hub_mod.push(loaded, store, nodes, hub=hub, dry_run=False,
                                       allow_gate_failure=allow_gate_failure, console=console))
    log("done: " + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
    return seconds
