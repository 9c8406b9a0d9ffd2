"""The hub stage: push staged repos and pull published variants, on the embedded local hub or the Hugging Face Hub.

``base.Hub`` is the one interface; ``local.LocalHub`` and ``hf.HfHub`` implement it; ``ops`` plans the commit
operations both send; ``publish`` and ``fetch`` are ``zoo push`` and ``zoo pull``.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from zoo.errors import UsageError
from zoo.hub.base import Hub
from zoo.plan import Node
from zoo.registry import Loaded
from zoo.store import Store

HUBS = ("local", "hf")


def open_hub(kind: str, store: Store, require_token: bool = False) -> Hub:
    """The hub named on the command line: "local" (``store.hub``) or "hf" (huggingface.co).

    Raises:
        UsageError: an unknown hub name.
        ZooError: "hf" with ``require_token`` and no token.
    """
    if kind == "local":
        from zoo.hub.local import LocalHub

        return LocalHub(store.hub)
    if kind == "hf":
        from zoo.hub.hf import HfHub

        return HfHub.from_env(require_token=require_token)
    raise UsageError(f"unknown hub '{kind}': use one of {', '.join(HUBS)}")


def push(loaded: Loaded, store: Store, nodes: list[Node], hub: str | Hub = "local", dry_run: bool = False,
         allow_gate_failure: bool = False, console: Console | None = None):
    """Push the selected variants that passed their gate (and their families' Spaces); see ``publish.push``."""
    from zoo.hub import publish

    target = open_hub(hub, store, require_token=not dry_run) if isinstance(hub, str) else hub
    return publish.push(loaded, store, nodes, target, dry_run=dry_run, allow_gate_failure=allow_gate_failure,
                        console=console)


def pull(loaded: Loaded, store: Store, model: str, variant: str | None = None, target: str | None = None,
         revision: str | None = None, hub: str | Hub = "local", dest: Path | None = None,
         console: Console | None = None) -> Path:
    """Download a published variant and print how to load it; see ``fetch.pull``."""
    from zoo.hub import fetch

    source = open_hub(hub, store) if isinstance(hub, str) else hub
    return fetch.pull(loaded, source, model, variant=variant, target=target, revision=revision, dest=dest,
                      console=console)
