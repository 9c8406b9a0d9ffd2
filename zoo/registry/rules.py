"""Rules across entries that a per-field schema cannot say: parents, cycles, targets, recipes, gates, repo ids."""

from __future__ import annotations

from pathlib import Path

from zoo.errors import Problem, ZooError, did_you_mean
from zoo.families import family_of
from zoo.ids import RESERVED_VARIANTS, adapter_repo_id, repo_id, repo_id_problem, space_id, tag_problem
from zoo.metrics import spec as metric_spec
from zoo.registry.recipes import Recipe, load_recipe
from zoo.registry.schema import Kind, Registry
from zoo.sources import confined, parse_source
from zoo.yamlio import Document

# Deepest 'from:' chain: each level is a whole build, so real chains are 2-4 deep; stages that walk a chain stay far
# below Python's recursion limit.
MAX_CHAIN_DEPTH = 32


def check(reg: Registry, doc: Document, recipes_dir: Path, recipes_display: str
          ) -> tuple[dict[str, Recipe], list[Problem]]:
    """Apply every cross-entry rule; return the recipes that loaded and all problems (errors and warnings)."""
    problems: list[Problem] = []
    recipes: dict[str, Recipe] = {}
    failed: set[str] = set()
    seen_repos: dict[str, str] = {}
    if reg.version is not None and (why := tag_problem(reg.version)):
        problems.append(doc.problem(("version",), f"{why}: `zoo push` tags every repo with it"))
    for mid, model in reg.models.items():
        at = ("models", mid)
        src = parse_source(model.base.source)
        if src.scheme == "hub" and not (src.version or model.base.revision):
            problems.append(doc.problem((*at, "base", "source"),
                                        f"'{model.base.source}' has no pinned revision: append @COMMIT_SHA so "
                                        "builds are reproducible", warning=True))
        for part, source in (("base", model.base.source), ("dataset", model.dataset.source)):
            if (parsed := parse_source(source)).scheme == "file":
                try:
                    confined(parsed.name, recipes_dir.parent, "")
                except ZooError as e:
                    problems.append(doc.problem((*at, part, "source"), str(e).removeprefix(": ")))
        metrics = family_of(model.task).metrics
        for i, m in enumerate(model.evaluation.metrics):
            if m not in metrics:
                problems.append(doc.problem((*at, "evaluation", "metrics", i),
                                            f"metric '{m}' does not apply to {model.task} "
                                            f"(use: {', '.join(sorted(metrics))})"))
        if model.evaluation.kfold and not any(metric_spec(m).per_row for m in model.evaluation.metrics):
            problems.append(doc.problem((*at, "evaluation", "kfold"), "k-fold applies to per-row metrics, "
                                        f"not to {model.task}: remove kfold"))
        problems += _check_gate(reg, doc, mid)
        for vid, variant in model.variants.items():
            vat = (*at, "variants", vid)
            if vid in RESERVED_VARIANTS:
                problems.append(doc.problem(vat, f"'{vid}' is reserved (repos/{mid}-{vid} holds the family card): "
                                            "rename the variant"))
            rids = [repo_id(reg.org, mid, vid)]
            if variant.kind == Kind.qlora_4bit:
                rids.append(adapter_repo_id(reg.org, mid, vid))
            for rid in rids:
                what = "repo id" if rid == rids[0] else "adapter repo id"
                if rid in seen_repos:
                    problems.append(doc.problem(vat, f"{what} '{rid}' is also that of {seen_repos[rid]}: "
                                                "rename one"))
                elif why := repo_id_problem(rid):
                    problems.append(doc.problem(vat, f"{why}: the Hub refuses it; shorten or rename the model or "
                                                "variant id (no '--', no trailing '-')"))
                seen_repos[rid] = f"models.{mid}.variants.{vid}" + (" (its adapter repo)" if rid != rids[0] else "")
            if variant.from_ != "base" and variant.from_ not in model.variants:
                problems.append(doc.problem((*vat, "from"), f"unknown parent '{variant.from_}'"
                                            f"{did_you_mean(variant.from_, ['base', *model.variants])}"))
            if variant.from_ == vid:
                problems.append(doc.problem((*vat, "from"), "a variant cannot be its own parent"))
            if variant.target not in reg.targets:
                problems.append(doc.problem((*vat, "target"), f"unknown target '{variant.target}'"
                                            f"{did_you_mean(variant.target, reg.targets)}"))
            name = variant.recipe
            if name not in recipes and name not in failed:
                if not (recipes_dir / f"{name}.yaml").is_file():
                    known = [p.stem for p in recipes_dir.glob("*.yaml")]
                    problems.append(doc.problem((*vat, "recipe"), f"unknown recipe '{name}'"
                                                f"{did_you_mean(name, known)}: add {recipes_display}/{name}.yaml"))
                    failed.add(name)
                    continue
                recipe, rp = load_recipe(name, recipes_dir, recipes_display)
                problems += rp
                if recipe is None:
                    failed.add(name)
                    continue
                recipes[name] = recipe
            recipe = recipes.get(name)
            if recipe is None:
                continue
            t = recipe.technique
            if variant.kind not in t.kinds:
                problems.append(doc.problem((*vat, "kind"), f"recipe '{name}' (technique {t.name}) builds "
                                            f"{', '.join(sorted(t.kinds))}, not {variant.kind}: "
                                            "pick a recipe for this kind"))
            if model.task not in t.tasks:
                problems.append(doc.problem((*vat, "recipe"), f"recipe '{name}' (technique {t.name}) does not "
                                            f"support {model.task} (it supports {', '.join(sorted(t.tasks))})"))
        if why := repo_id_problem(space_id(reg.org, mid)):
            problems.append(doc.problem(at, f"{why}: the Hub refuses the demo Space's id; shorten the model id"))
        problems += _check_chains(reg, doc, mid)
    return recipes, problems


def _check_gate(reg: Registry, doc: Document, mid: str) -> list[Problem]:
    model = reg.models[mid]
    gate = model.evaluation.gate
    if gate is None:
        return []
    at = ("models", mid, "evaluation", "gate")
    out = []
    metric = model.evaluation.primary
    if metric not in family_of(model.task).metrics:
        out.append(doc.problem((*at, "metric"), f"gate on '{metric}', which {model.task} does not have "
                               f"(use: {', '.join(sorted(family_of(model.task).metrics))})"))
    elif gate.metric and gate.metric not in model.evaluation.metrics:
        out.append(doc.problem((*at, "metric"), f"gate on '{gate.metric}', which is not in evaluation.metrics: "
                               "add it there"))
    if gate.of != "parent" and gate.of not in model.variants:
        out.append(doc.problem((*at, "of"), f"unknown variant '{gate.of}'"
                               f"{did_you_mean(gate.of, ['parent', *model.variants])}"))
    for vid, v in model.variants.items():
        if v.gate_of is not None and (v.gate_of == vid or v.gate_of not in model.variants):
            out.append(doc.problem(("models", mid, "variants", vid, "gate_of"),
                                   f"'{v.gate_of}' is not another variant of {mid}"
                                   f"{did_you_mean(v.gate_of, [x for x in model.variants if x != vid])}"))
    return out


def _check_chains(reg: Registry, doc: Document, mid: str) -> list[Problem]:
    """Cycles in ``from:`` and chains deeper than MAX_CHAIN_DEPTH, in one pass over the variants (linear time)."""
    variants = reg.models[mid].variants
    out: list[Problem] = []
    depth: dict[str, int] = {}  # variant -> builds from base to it; -1: on a cycle
    for start in variants:
        path: list[str] = []
        on_path: dict[str, int] = {}
        cur = start
        while cur in variants and cur not in depth and cur not in on_path:
            on_path[cur] = len(path)
            path.append(cur)
            cur = variants[cur].from_
        if cur in on_path:  # the walk came back to itself: a cycle (each cycle is found once, by its first walk)
            cycle = path[on_path[cur]:]
            if len(cycle) > 1:
                out.append(doc.problem(("models", mid, "variants", min(cycle), "from"),
                                       f"cycle in 'from:': {' -> '.join([*cycle, cur])}: one of them must "
                                       "come from 'base' or a variant outside the cycle"))
            for v in cycle:
                depth[v] = -1
            path = path[:on_path[cur]]
            below = -1
        else:
            below = depth.get(cur, 0)  # 0: base (or an unknown parent, reported elsewhere)
        for v in reversed(path):
            below = -1 if below < 0 else below + 1
            depth[v] = below
    deep = [v for v, d in depth.items() if d > MAX_CHAIN_DEPTH]
    if deep:
        worst = max(deep, key=depth.__getitem__)
        out.append(doc.problem(("models", mid, "variants", worst, "from"),
                               f"'from:' chain of {depth[worst]} builds from base (limit {MAX_CHAIN_DEPTH}; "
                               f"{len(deep)} variants are deeper): build deep variants from a nearer parent"))
    return out
