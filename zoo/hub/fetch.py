"""``zoo pull``: download a published variant, picked by id or as the best passing one for a target."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from zoo import ids
from zoo.errors import UsageError, ZooError, did_you_mean
from zoo.families import family_of
from zoo.hub.base import Hub
from zoo.metrics import LOWER_IS_BETTER
from zoo.registry import Loaded
from zoo.status import gate_passed


def best_for_target(loaded: Loaded, hub: Hub, model: str, target: str, revision: str | None = None) -> str:
    """The published variant of ``model`` for ``target`` picked by ``zoo.report.pick_for_target``: among those that
    passed their gate, the fastest on the Pareto front (metric vs batch-1 p50).

    Raises:
        UsageError: unknown target.
        ZooError: no published variant for that target passed its gate.
    """
    reg = loaded.registry
    if target not in reg.targets:
        raise UsageError(f"unknown target '{target}'{did_you_mean(target, reg.targets)}")
    m = loaded.model(model)
    metric = m.evaluation.primary
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    candidates = []
    for vid, v in m.variants.items():
        if v.target != target:
            continue
        raw = hub.read_file(ids.repo_id(reg.org, model, vid), "model", "results.json", revision)
        if raw is None:
            continue
        results = json.loads(raw)
        value = (results.get("metrics") or {}).get(str(metric))
        if not gate_passed(results) or value is None:
            continue
        p50 = (((results.get("perf") or {}).get("latency_ms") or {}).get("batch_1") or {}).get("p50")
        candidates.append((sign * value, p50 if p50 is not None else float("inf"), vid))
    if not candidates:
        named = [vid for vid, v in m.variants.items() if v.target == target]
        raise ZooError(f"{model}: no published variant for target '{target}' passed its gate "
                       f"(variants for it: {', '.join(named) or 'none'}): run `zoo push {model}` first")
    from zoo.report import pick_for_target

    return pick_for_target(candidates)


def pull(loaded: Loaded, hub: Hub, model: str, variant: str | None = None, target: str | None = None,
         revision: str | None = None, dest: Path | None = None, console: Console | None = None) -> Path:
    """Download a published variant into ``dest`` (default ``./<model>-<variant>``) and print how to load it.

    Returns:
        The folder it was written to.

    Raises:
        UsageError: unknown model, variant or target.
        ZooError: the repo or revision does not exist on the hub.
    """
    console = console or Console()
    models = loaded.registry.models
    if model not in models:
        raise UsageError(f"unknown model '{model}'{did_you_mean(model, models)}")
    if target is not None:
        variant = best_for_target(loaded, hub, model, target, revision)
    elif variant not in models[model].variants:
        raise UsageError(f"unknown variant '{model}:{variant}'{did_you_mean(str(variant), models[model].variants)}")
    repo_id = ids.repo_id(loaded.registry.org, model, variant)
    commit = hub.resolve(repo_id, "model", revision)
    folder = hub.snapshot(repo_id, "model", commit, Path(dest) if dest else Path.cwd() / f"{model}-{variant}")
    provenance = folder / "provenance.json"
    fmt = json.loads(provenance.read_text()).get("format") if provenance.is_file() else None
    lines = [f"pulled {repo_id}@{commit[:12]} ({model}:{variant}) into {folder}",
             *family_of(models[model].task).load_lines(folder, fmt)]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return folder
