"""Build variants in plan order: each technique writes into a temp folder that becomes the artifact in one rename."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zoo import progress as progress_mod
from zoo import verify
from zoo.data import Splits, load_splits
from zoo.errors import ZooError
from zoo.plan import Node, library_versions
from zoo.registry import Loaded
from zoo.sources import resolve, sha256_file
from zoo.store import Store, atomic_dir, clean_temp
from zoo.techniques import BuildContext


@dataclass
class Outcome:
    node: Node
    status: str  # "built" or "skipped"
    seconds: float
    path: Path


def base_dir(loaded: Loaded, model_id: str) -> Path:
    """The base model's folder, fetched from its source and checked against its sha256."""
    m = loaded.model(model_id)
    return resolve(m.base.source, m.base.sha256, loaded.root, f"models.{model_id}.base.source", m.base.revision)


def check_sources(loaded: Loaded) -> None:
    """Fetch every model's base and dataset, check their sha256, and read the dataset's declared columns.

    Raises:
        ZooError: every problem found, one line each.
    """
    problems = []
    for mid, model in loaded.registry.models.items():
        for check, args in ((base_dir, (loaded, mid)), (load_splits, (model, loaded.root, f"models.{mid}.dataset"))):
            try:
                check(*args)
            except ZooError as e:
                problems += [loaded.locate(line) for line in str(e).splitlines()]
    if problems:
        raise ZooError("\n".join(problems))


def build(loaded: Loaded, store: Store, nodes: list[Node], force: bool = False, log=print) -> list[Outcome]:
    """Build each node whose artifact is missing (or all of them with ``force``), parents first.

    Raises:
        ZooError: a source, dataset or technique failed; artifacts already built stay, nothing half-built does.
    """
    outcomes: list[Outcome] = []
    with store.lock(log=log):
        clean_temp(store.root / "artifacts") if (store.root / "artifacts").exists() else None
        all_nodes = {n.key: n for n in nodes}
        with progress_mod.bar() as progress:
            overall = progress_mod.add(progress, "build", len(nodes))
            for node in nodes:
                progress.update(overall, info=node.key)
                if store.is_built(node.hash) and not force:
                    outcomes.append(Outcome(node, "skipped", 0.0, store.artifact(node.hash)))
                    progress.advance(overall)
                    continue
                start = time.perf_counter()
                path = _build_one(loaded, store, node, all_nodes, progress, log)
                outcomes.append(Outcome(node, "built", time.perf_counter() - start, path))
                progress.advance(overall)
    return outcomes


def _build_one(loaded: Loaded, store: Store, node: Node, all_nodes: dict[str, Node], progress, log) -> Path:
    model = loaded.model(node.model_id)
    variant = model.variants[node.variant_id]
    recipe = loaded.recipe_of(variant)
    if node.parent == "base":
        parent_dir, parent_kind, parent_hash = base_dir(loaded, node.model_id), "base", node.inputs["base"]
    else:
        pnode = all_nodes.get(f"{node.model_id}:{node.parent}")
        if pnode is None or not store.is_built(pnode.hash):
            raise ZooError(f"{node.key}: its parent '{node.parent}' is not built: run `zoo build "
                           f"{node.model_id}:{node.parent}` first")
        verify.artifact(store, pnode)
        parent_dir, parent_kind, parent_hash = store.artifact(pnode.hash), pnode.kind, pnode.hash

    splits_cache: list[Splits] = []

    def splits() -> Splits:
        if not splits_cache:
            splits_cache.append(load_splits(model, loaded.root, f"models.{node.model_id}.dataset"))
        return splits_cache[0]

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with atomic_dir(store.artifact(node.hash)) as out:
        ctx = BuildContext(
            model_id=node.model_id, variant_id=node.variant_id, model=model, variant=variant,
            target=loaded.registry.targets[variant.target], recipe_name=recipe.name, params=recipe.params,
            parent_dir=parent_dir, parent_kind=parent_kind, out_dir=out, splits=splits, progress=progress,
            root=loaded.root, log=log,
        )
        log(f"building {node.key} ({node.kind}, technique {node.technique})")
        extra = recipe.technique.build(ctx)
        if "format" not in extra:
            raise ZooError(f"{node.key}: technique {node.technique} did not say which format it wrote")
        provenance = _provenance(loaded, node, recipe.raw, parent_hash, parent_dir, out, extra, started,
                                 time.perf_counter() - t0)
        (out / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
    return store.artifact(node.hash)


def _provenance(loaded: Loaded, node: Node, recipe_raw: dict[str, Any], parent_hash: str, parent_dir: Path,
                out: Path, extra: dict[str, Any], started: datetime, seconds: float) -> dict[str, Any]:
    model = loaded.model(node.model_id)
    files = {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
    return {
        "model": node.model_id,
        "variant": node.variant_id,
        "kind": node.kind,
        "hash": node.hash,
        "hash_inputs": node.inputs,
        "parent": {"variant": node.parent, "hash": parent_hash},
        "base": model.base.model_dump(mode="json"),
        "dataset": model.dataset.model_dump(mode="json"),
        "recipe": {"name": node.recipe, "technique": node.technique, **recipe_raw},
        "target": node.target,
        "seed": recipe_raw.get("seed", 0),
        "libraries": library_versions(),
        "python": platform.python_version(),
        "built_at": started.isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 2),
        "builder": {"host_cpus": os.cpu_count(), "machine": platform.machine()},
        "files": files,
        **extra,
    }
