"""`--executor ray`: build and evaluate the DAG as Ray tasks across a cluster's nodes.

Each variant's build is a task submitted with its parent's task as a dependency, so independent variants run at
once. A task asks for ``num_cpus`` = the build's threads (``ZOO_THREADS``, default 1) and ``num_gpus`` when its
technique needs a GPU; a task no node can host is reported before anything is submitted, never left pending. The
evaluation of a variant whose target names Ray resources (``resources: {rpi5: 1}``) or a GPU runs on a node that
offers them, so its speed is measured on the target; with no such node it runs anywhere and says "not measured on
target". Artifacts travel through the shared store (:mod:`zoo.remote_store`); the driver fetches them into the local
store at the end, so card, space and push work as after a local build.

Nodes get the project through the task's ``runtime_env``: the registry's folder as ``working_dir`` (without the
store and the virtual environment) and the zoo's environment variables (``ZOO_*``, ``HF_*``, ``AWS_*``,
``FSSPEC_*``); each node needs the zoo installed (``pip install modelzoo[cluster]``) in the Python ``ray start`` runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import progress as progress_mod
from zoo.build import Outcome
from zoo.errors import ZooError
from zoo.plan import Node, make
from zoo.registry import Loaded
from zoo.registry.schema import Device
from zoo.remote_store import RemoteStore, store_url
from zoo.store import Store

ENV_PREFIXES = ("ZOO_", "HF_", "AWS_", "FSSPEC_", "HUGGINGFACE_")
RETRIES = 3  # a task whose worker or node dies is run again this many times


def connect(address: str | None, project: Path) -> None:
    """Join the cluster at ``address`` (``auto``, ``ray://…`` or ``host:port``), or start a local Ray instance."""
    import ray

    if ray.is_initialized():
        return
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) and k != "ZOO_HOME"}
    runtime_env: dict[str, Any] = {"env_vars": env}
    if address:
        runtime_env |= {"working_dir": str(project), "excludes": [".zoo", ".venv", ".git", "__pycache__"]}
    try:
        ray.init(address=address or "local", runtime_env=runtime_env, log_to_driver=False, include_dashboard=False,
                 logging_level=logging.ERROR, configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"--address {address}: cannot join the Ray cluster ({first}); start one with "
                       "`ray start --head` or leave --address out for a local one") from None


@dataclass
class Demand:
    num_cpus: float
    num_gpus: float
    resources: dict[str, float]

    def as_dict(self) -> dict[str, float]:
        return {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}


def _threads() -> int:
    env = os.environ.get("ZOO_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else 1


def build_demand(loaded: Loaded, node: Node) -> Demand:
    recipe = loaded.recipe_of(loaded.model(node.model_id).variants[node.variant_id])
    return Demand(_threads(), 1.0 if getattr(recipe.technique, "needs_gpu", False) else 0.0, {})


def target_demand(loaded: Loaded, node: Node) -> Demand:
    """What a node must offer to be ``node``'s target: the target's Ray resources, and a GPU for a GPU target."""
    target = loaded.registry.targets[node.target]
    return Demand(_threads(), 1.0 if target.device == Device.gpu else 0.0, dict(target.resources or {}))


def _hostable(demand: Demand) -> bool:
    import ray

    want = {k: v for k, v in demand.as_dict().items() if v}
    return any(all(n["Resources"].get(k, 0) >= v for k, v in want.items()) for n in ray.nodes() if n["Alive"])


def _options(demand: Demand) -> dict[str, Any]:
    return {"num_cpus": demand.num_cpus, "num_gpus": demand.num_gpus, "resources": demand.resources or None,
            "max_retries": RETRIES}


def _node_env(threads: float) -> None:
    """Tell :mod:`zoo.machine` which Ray resources this node offers, so a target's node recognises itself, and use
    the task's CPUs as the thread count (the same count as the driver's, so a build is the same bytes anywhere)."""
    import ray

    os.environ["ZOO_THREADS"] = str(max(1, int(threads)))
    node_id = ray.get_runtime_context().get_node_id()
    mine = next((n for n in ray.nodes() if n["NodeID"] == node_id), None)
    resources = {k: v for k, v in (mine or {}).get("Resources", {}).items()
                 if not k.startswith("node:") and k not in ("memory", "object_store_memory")}
    os.environ["ZOO_NODE_RESOURCES"] = json.dumps(resources, sort_keys=True)
    os.environ["ZOO_RAY_NODE"] = node_id


def _registry_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_file() else Path(p.name)  # on a remote node the working_dir is the registry's folder


def _task_node(registry_path: str, key: str, url: str, threads: float) -> tuple[Loaded, dict[str, Node], Node,
                                                                             RemoteStore]:
    """On a worker: its environment, the registry, every planned node, the task's node and the shared store."""
    from zoo import registry

    _node_env(threads)
    loaded = registry.load(_registry_path(registry_path))
    nodes = {n.key: n for n in make(loaded)}
    return loaded, nodes, nodes[key], RemoteStore(url)


def _build_task(registry_path: str, key: str, url: str, force: bool, threads: float, *parent_done: Any
                ) -> dict[str, Any]:
    """On a worker: fetch the parent from the shared store, build ``key`` in a scratch store, upload it."""
    from zoo import build

    loaded, nodes, node, shared = _task_node(registry_path, key, url, threads)
    if shared.has(node.hash) and not force:
        return {"key": key, "status": "skipped", "seconds": 0.0, "node": os.environ["ZOO_RAY_NODE"]}
    scratch = Store(Path(tempfile.mkdtemp(prefix="zoo-task-")))
    try:
        todo = [node]
        if node.parent != "base":
            parent = nodes[f"{node.model_id}:{node.parent}"]
            shared.fetch(parent.hash, scratch)
            todo.insert(0, parent)
        start = time.perf_counter()
        build.build(loaded, scratch, todo, force=False, log=lambda *_: None)
        seconds = time.perf_counter() - start
        shared.put(node.hash, scratch)
        return {"key": key, "status": "built", "seconds": seconds, "node": os.environ["ZOO_RAY_NODE"]}
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)


def _eval_task(registry_path: str, key: str, url: str, force: bool, threads: float, ref_results: dict | None
               ) -> dict[str, Any]:
    """On a worker: fetch the artifact (and the gate reference's results), evaluate it, upload the results."""
    from zoo import evaluate
    from zoo.store import write_json

    loaded, _nodes, node, shared = _task_node(registry_path, key, url, threads)
    scratch = Store(Path(tempfile.mkdtemp(prefix="zoo-task-")))
    try:
        shared.fetch(node.hash, scratch)
        if not force:
            shared.fetch_results(node.hash, scratch)
        if ref_results is not None:
            write_json(scratch.results(ref_results["hash"]), ref_results)
        results = evaluate.evaluate(loaded, scratch, [node], force=force, log=lambda *_: None)[key]
        shared.put_results(node.hash, results)
        return results
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)


class _Tracker:
    """The driver's view: submit tasks, wait for them with a rich progress bar, report failures per variant."""

    def __init__(self, progress, label: str, total: int):
        self.progress = progress
        self.task = progress_mod.add(progress, label, total)
        self.pending: dict[Any, str] = {}

    def wait_all(self, log) -> tuple[dict[str, Any], dict[str, str]]:
        import ray

        done: dict[str, Any] = {}
        failed: dict[str, str] = {}
        while self.pending:
            self.progress.update(self.task, info=", ".join(sorted(self.pending.values()))[:80])
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=1.0)
            for ref in ready:
                key = self.pending.pop(ref)
                try:
                    done[key] = ray.get(ref)
                except Exception as e:  # noqa: BLE001 — a task's error is that variant's outcome
                    failed[key] = _first_line(e)
                    log(f"{key}: failed: {failed[key]}")
                self.progress.advance(self.task)
        return done, failed


def _first_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()
    return next((line for line in reversed(text) if line.strip()), type(cause).__name__)[:300]


def build(loaded: Loaded, store: Store, nodes: list[Node], address: str | None = None, force: bool = False,
          log=print, hub_cache: str | None = None) -> list[Outcome]:
    """Build ``nodes`` on the cluster; artifacts end in the shared store and in ``store``.

    Raises:
        ZooError: one line per variant that failed or that no node can host (the others are built).
    """
    import ray

    from zoo import hub_cache as hub_cache_mod

    url = store_url(loaded.registry.store, store)
    shared = RemoteStore(url)
    connect(address, loaded.root)
    remote = ray.remote(_build_task)
    refs: dict[str, Any] = {}
    outcomes: dict[str, Outcome] = {}
    problems: list[str] = []
    started = time.perf_counter()
    with progress_mod.bar() as progress:
        tracker = _Tracker(progress, "build (ray)", len(nodes))
        for node in nodes:
            parent_key = f"{node.model_id}:{node.parent}"
            if not force and (store.is_built(node.hash) or shared.has(node.hash)):
                if not shared.has(node.hash):
                    shared.put(node.hash, store)
                outcomes[node.key] = Outcome(node, "skipped", 0.0, store.artifact(node.hash))
                progress.advance(tracker.task)
                continue
            if hub_cache and not force and hub_cache_mod.fetch(loaded, store, node, hub_cache, log=log):
                shared.put(node.hash, store)
                outcomes[node.key] = Outcome(node, "from hub", 0.0, store.artifact(node.hash))
                progress.advance(tracker.task)
                continue
            if node.parent != "base" and parent_key not in refs and parent_key not in outcomes:
                problems.append(f"{node.key}: not built because its parent {parent_key} was not")
                progress.advance(tracker.task)
                continue
            demand = build_demand(loaded, node)
            if not _hostable(demand):
                problems.append(f"{node.key}: no node of the cluster can host its build (needs "
                                f"{_text(demand)}): add such a node or change its recipe")
                progress.advance(tracker.task)
                continue
            deps = [refs[parent_key]] if parent_key in refs else []
            ref = remote.options(**_options(demand), name=f"build {node.key}").remote(
                str(loaded.path), node.key, url, force, demand.num_cpus, *deps)
            refs[node.key] = ref
            tracker.pending[ref] = node.key
        done, failed = tracker.wait_all(log)
    problems += [f"{k}: {why}" for k, why in failed.items()]
    for node in nodes:
        if node.key in done:
            shared.fetch(node.hash, store)
            r = done[node.key]
            outcomes[node.key] = Outcome(node, r["status"], r["seconds"], store.artifact(node.hash))
    log(f"cluster build: {len(done)} tasks in {time.perf_counter() - started:.1f}s")
    if problems:
        raise ZooError("\n".join(problems))
    return [outcomes[n.key] for n in nodes if n.key in outcomes]


def evaluate(loaded: Loaded, store: Store, nodes: list[Node], address: str | None = None, force: bool = False,
             log=print) -> dict[str, dict]:
    """Evaluate built ``nodes`` on the cluster, each variant's speed on a node of its target when there is one.

    Raises:
        ZooError: one line per variant whose evaluation failed.
    """
    import ray

    from zoo.evaluate import _reference
    from zoo.status import read_results

    url = store_url(loaded.registry.store, store)
    shared = RemoteStore(url)
    connect(address, loaded.root)
    remote = ray.remote(_eval_task)
    every = {n.key: n for n in make(loaded)}
    order: list[Node] = []
    for node in nodes:
        ref = _reference(loaded.model(node.model_id), node)
        ref_node = every.get(f"{node.model_id}:{ref}") if ref else None
        if ref_node is not None and ref_node not in order and ref_node not in nodes and store.is_built(ref_node.hash):
            order.append(ref_node)
        if store.is_built(node.hash) or shared.has(node.hash):
            order.append(node)
        else:
            log(f"{node.key}: not built, skipped (run `zoo build {node.key}`)")
    refs: dict[str, Any] = {}
    with progress_mod.bar() as progress:
        tracker = _Tracker(progress, "eval (ray)", len(order))
        for node in order:
            if store.is_built(node.hash) and not shared.has(node.hash):
                shared.put(node.hash, store)
            target = target_demand(loaded, node)
            demand = target if _hostable(target) else Demand(target.num_cpus, 0.0, {})
            ref_key = _reference(loaded.model(node.model_id), node)
            ref_key = f"{node.model_id}:{ref_key}" if ref_key else None
            ref_arg = refs.get(ref_key) if ref_key else None
            if ref_arg is None and ref_key and ref_key in every:
                ref_arg = read_results(store, every[ref_key])
            ref = remote.options(**_options(demand), name=f"eval {node.key}").remote(
                str(loaded.path), node.key, url, force, demand.num_cpus, ref_arg)
            refs[node.key] = ref
            tracker.pending[ref] = node.key
        done, failed = tracker.wait_all(log)
    from zoo.store import write_json

    results: dict[str, dict] = {}
    for node in order:
        if node.key in done:
            write_json(store.results(node.hash), done[node.key])
            shared.fetch(node.hash, store)
            results[node.key] = done[node.key]
    if failed:
        raise ZooError("\n".join(f"{k}: {why}" for k, why in failed.items()))
    return results


def _text(demand: Demand) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in demand.as_dict().items() if v)
