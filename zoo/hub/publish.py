"""``zoo push``: publish the staged repos of evaluated variants, then each family's Space, one commit per repo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from zoo import ids
from zoo.errors import ZooError
from zoo.hub import ops
from zoo.hub.base import Hub, RepoType
from zoo.plan import Node
from zoo.registry import Loaded
from zoo.status import gate_passed, read_results
from zoo.store import Store, read_json


@dataclass(frozen=True)
class Staged:
    """A staged folder and the repo it goes to."""

    repo_id: str
    repo_type: RepoType
    folder: Path
    model_id: str
    what: str  # "tiny:fp32", "tiny:qlora-4bit adapter", "tiny demo Space": how messages name it
    gated: bool


@dataclass
class Row:
    repo_id: str
    repo_type: RepoType
    added: int
    deleted: int
    bytes: int
    commit: str | None  # the new commit, or None when nothing changed / dry run
    tagged: str | None = None
    created: bool = False


def staged_repos(loaded: Loaded, store: Store, nodes: list[Node], allow_gate_failure: bool,
                 say) -> list[Staged]:
    """What to push, checked before anything is sent: variants that passed their gate, then each family's Space.

    Raises:
        ZooError: a variant to push has no staged repo, or one staged from another build.
    """
    org = loaded.registry.org
    out: list[Staged] = []
    models: list[str] = []
    for node in nodes:
        results = read_results(store, node)
        passed = gate_passed(results)
        if passed is None:
            say(f"skipped {node.key}: not evaluated (run `zoo eval {node.key}`)")
            continue
        if not passed and not allow_gate_failure:
            say(f"skipped {node.key}: {_gate_text(results)} (--allow-gate-failure pushes it anyway)")
            continue
        gated = loaded.model(node.model_id).gated
        folder = store.repo(node.model_id, node.variant_id)
        _check_staged(node, folder)
        out.append(Staged(ids.repo_id(org, node.model_id, node.variant_id), "model", folder, node.model_id,
                          node.key, gated))
        adapter = store.repo(node.model_id, f"{node.variant_id}-adapter")
        if adapter.is_dir():
            out.append(Staged(ids.adapter_repo_id(org, node.model_id, node.variant_id), "model", adapter,
                              node.model_id, f"{node.key} adapter", gated))
        if node.model_id not in models:
            models.append(node.model_id)
    for mid in models:
        folder = store.space(mid)
        sid = ids.space_id(org, mid)
        if (folder / "README.md").is_file():
            out.append(Staged(sid, "space", folder, mid, f"{mid} demo Space", False))
        else:
            say(f"skipped {sid}: the Space is not staged (run `zoo space {mid}`)")
        family = store.repo(mid, "family")
        if (family / "README.md").is_file():
            out.append(Staged(ids.family_repo_id(org, mid), "model", family, mid, f"{mid} family card", False))
    return out


def _gate_text(results: dict) -> str:
    """Why the gate failed: the ratio (with its verdict when not a pass) and every check that did not pass."""
    g = results.get("gate") or {}
    parts = []
    if "ratio" in g:
        verdict = g.get("verdict")
        parts.append(f"{g.get('metric')} {g['ratio']:.4f} of {g.get('of')}, needs {g.get('min_ratio')}"
                     + (f": {verdict}" if verdict and verdict != "pass" else ""))
    failed = [f"{c['check']} ({c.get('verdict', 'failed')})" for c in g.get("checks") or [] if not c.get("passed")]
    if failed:
        parts.append("failed checks: " + ", ".join(failed))
    return f"gate failed ({'; '.join(parts)})" if parts else "gate failed"


def _check_staged(node: Node, folder: Path) -> None:
    if not (folder / "README.md").is_file() or not (folder / "results.json").is_file():
        raise ZooError(f"{node.key}: nothing staged at {folder}: run `zoo card {node.key}` first")
    staged_hash = read_json(folder / "results.json").get("hash")
    if staged_hash != node.hash:
        raise ZooError(f"{node.key}: {folder} holds build {staged_hash}, not the current build {node.hash}: "
                       f"run `zoo card {node.key}` again")


def push_one(hub: Hub, item: Staged, message: str, tag: str | None, dry_run: bool, say) -> Row:
    """Create the repo if needed, commit only the files that changed (no commit if none did), tag the head.

    An unchanged repo costs two requests: one repo_info (head, files, gate) and one list of refs (the tag).

    Raises:
        ZooError: the repo moved while pushing, or the hub failed after retries.
    """
    state = hub.state(item.repo_id, item.repo_type)
    created = state is None
    if created and not dry_run:
        hub.create_repo(item.repo_id, item.repo_type)
    if item.gated and not dry_run and (state is None or not state.gated):
        hub.set_gated(item.repo_id, item.repo_type)
    head = state.head if state else None
    plan = ops.plan(item.folder, state.files if state else {})
    row = Row(item.repo_id, item.repo_type, len(plan.adds), len(plan.deletes), plan.bytes, None)
    if dry_run:
        state_text = "no change" if plan.empty else f"{len(plan.operations)} operations, " \
                                                    f"{ops.human_bytes(plan.bytes)}"
        say(f"{item.repo_id} ({item.repo_type}): {state_text}" + (", gated" if item.gated else ""))
        for line in plan.describe():
            say(f"  {line}")
        return row
    commit = head
    if not plan.empty:
        commit = row.commit = hub.commit(item.repo_id, item.repo_type, plan.operations, message, parent_commit=head)
    if tag and commit and hub.tag(item.repo_id, item.repo_type, tag, commit):
        row.tagged = tag
    row.created = created
    return row


def push(loaded: Loaded, store: Store, nodes: list[Node], hub: Hub, dry_run: bool = False,
         allow_gate_failure: bool = False, console: Console | None = None) -> list[Row]:
    """Push every selected variant that passed its gate, its adapter repo, and its family's Space.

    Returns:
        One row per repo, in push order.

    Raises:
        ZooError: a staged folder is missing or stale (nothing is sent), or a push failed (the rows pushed
        before it are printed first).
    """
    console = console or Console()

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    version = loaded.registry.version
    items = staged_repos(loaded, store, nodes, allow_gate_failure, say)
    if not items:
        say("nothing to push")
        return []
    if dry_run:
        say(f"dry run on the {hub.name} hub ({hub.endpoint}): nothing is sent")
    rows: list[Row] = []
    try:
        for item in items:
            message = f"Publish {item.what} (registry {version or 'unversioned'})"
            rows.append(push_one(hub, item, message, version, dry_run, say))
            if not dry_run and (rows[-1].created or rows[-1].commit):  # an unchanged repo is already in it
                hub.add_to_collection(loaded.registry.org, item.model_id, item.repo_id, item.repo_type)
    finally:
        if rows and not dry_run:
            console.print(summary(rows, hub.name))
    return rows


def summary(rows: list[Row], hub_name: str) -> Table:
    table = Table(title=f"pushed to the {hub_name} hub")
    for col in ("repo", "type", "files changed", "bytes", "commit", "tag"):
        table.add_column(col, no_wrap=col in ("repo", "commit"))
    for r in rows:
        changed = f"+{r.added} -{r.deleted}" if r.added or r.deleted else "0"
        table.add_row(r.repo_id, r.repo_type, changed, ops.human_bytes(r.bytes),
                      r.commit[:12] if r.commit else "no change", r.tagged or "")
    return table
