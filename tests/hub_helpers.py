"""Helpers for tests that read what a push published: through the embedded hub's HTTP API, as a consumer would."""

from __future__ import annotations

from pathlib import Path

from zoo.hub.hf import HfHub
from zoo.hub.server import HubServer
from zoo.store import Store


def snapshot(store: Store, repo_id: str, repo_type: str = "model", revision: str | None = None) -> Path:
    """The files of ``repo_id`` at ``revision`` (default main), pulled over HTTP into ``<store>/test-pulls/``."""
    dest = store.root / "test-pulls" / repo_type / repo_id / (revision or "main")
    with HubServer(store.hub) as server:
        return HfHub(server.token, endpoint=server.url, name="local").snapshot(repo_id, repo_type,
                                                                                           revision, dest)
