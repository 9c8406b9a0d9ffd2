"""The hub stage: push staged repos and pull published variants, on the embedded hub or the Hugging Face Hub.

``base.Hub`` is the interface and ``hf.HfHub`` (huggingface_hub) its one implementation, for both servers; the
embedded hub is ``server.HubServer`` over ``storage.HubStorage``, started in-process for the length of a command
unless ``ZOO_HUB_URL`` names one already running (``zoo hub serve``). ``ops`` plans the commit operations;
``publish`` and ``fetch`` are ``zoo push`` and ``zoo pull``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from zoo.errors import UsageError
from zoo.hub.base import Hub
from zoo.plan import Node
from zoo.registry import Loaded
from zoo.store import Store

HUBS = ("local", "hf")


@contextlib.contextmanager
def embedded(root: Path) -> Iterator[tuple[str, str]]:
    """The embedded hub for the length of a block: ``ZOO_HUB_URL`` (token from ``ZOO_HUB_TOKEN``, else ``root``'s
    token file) or a server over ``root`` started on a free port of 127.0.0.1. Yields (url, token)."""
    url = os.environ.get("ZOO_HUB_URL")
    if url:
        from zoo.hub.storage import HubStorage

        token = os.environ.get("ZOO_HUB_TOKEN") or (HubStorage(root).token() if (root / "token").is_file() else "")
        yield url.rstrip("/"), token
        return
    from zoo.hub.server import HubServer

    with HubServer(root) as server:
        yield server.url, server.token


@contextlib.contextmanager
def open_hub(kind: str, store: Store, require_token: bool = False) -> Iterator[Hub]:
    """The hub named on the command line, open for the length of a block: "local" (the embedded hub over
    ``store.hub``) or "hf" (huggingface.co).

    Raises:
        UsageError: an unknown hub name.
        ZooError: "hf" with ``require_token`` and no token.
    """
    from zoo.hub.hf import HfHub

    if kind == "local":
        with embedded(store.hub) as (url, token):
            yield HfHub(token=token or None, endpoint=url, name="local",
                        cache_dir=store.root / "cache" / "hub-reads")
        return
    if kind == "hf":
        yield HfHub.from_env(require_token=require_token)
        return
    raise UsageError(f"unknown hub '{kind}': use one of {', '.join(HUBS)}")


def push(loaded: Loaded, store: Store, nodes: list[Node], hub: str | Hub = "local", dry_run: bool = False,
         allow_gate_failure: bool = False, console: Console | None = None):
    """Push the selected variants that passed their gate (and their families' Spaces); see ``publish.push``."""
    from zoo.hub import publish

    if not isinstance(hub, str):
        return publish.push(loaded, store, nodes, hub, dry_run=dry_run, allow_gate_failure=allow_gate_failure,
                            console=console)
    with open_hub(hub, store, require_token=not dry_run) as target:
        return publish.push(loaded, store, nodes, target, dry_run=dry_run, allow_gate_failure=allow_gate_failure,
                            console=console)


def pull(loaded: Loaded, store: Store, model: str, variant: str | None = None, target: str | None = None,
         revision: str | None = None, hub: str | Hub = "local", dest: Path | None = None,
         console: Console | None = None) -> Path:
    """Download a published variant and print how to load it; see ``fetch.pull``."""
    from zoo.hub import fetch

    if not isinstance(hub, str):
        return fetch.pull(loaded, hub, model, variant=variant, target=target, revision=revision, dest=dest,
                          console=console)
    with open_hub(hub, store) as source:
        return fetch.pull(loaded, source, model, variant=variant, target=target, revision=revision, dest=dest,
                          console=console)


def fsck(store: Store, repair: bool = False):
    """Check (and with ``repair``, quarantine damaged objects of) the embedded hub of ``store``; see
    ``storage.fsck``. Returns its ``FsckReport`` (``.ok``, ``.lines()``)."""
    from zoo.hub.storage import fsck as check

    return check(store.hub, repair=repair)
