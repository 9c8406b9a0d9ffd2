"""The hub as a remote cache, against the embedded hub's HTTP server: a published artifact with the planned hash is
fetched (and verified) instead of built; another hash, or no repo, means build it."""

from __future__ import annotations

import json
import os

import pytest

from zoo import hub_cache, ids, plan, registry
from zoo.errors import ZooError
from zoo.hub.server import HubServer
from zoo.sources import sha256_file
from zoo.store import Store


def _publish(api, repo: str, folder, h: str, tamper: bool = False) -> None:
    (folder / "model.bin").write_bytes(os.urandom(50_000))
    (folder / "config.json").write_text('{"a": 1}')
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / "provenance.json").write_text(json.dumps({"hash": h, "files": files}))
    (folder / "README.md").write_text("a card, not part of the artifact")
    if tamper:
        (folder / "model.bin").write_bytes(b"not what provenance says")
    api.create_repo(repo, exist_ok=True)
    api.upload_folder(repo_id=repo, folder_path=str(folder))


def test_hub_cache_fetches_same_hash_builds_otherwise(tiny_zoo, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the embedded hub has no Xet storage
    loaded = registry.load(tiny_zoo)
    nodes = {n.variant_id: n for n in plan.make(loaded)}
    org, mid = loaded.registry.org, "tiny-sentiment"
    with HubServer(tmp_path / "hub") as server:
        api = HfApi(endpoint=server.url, token=server.token)
        for vid, h, tamper in (("fp32", nodes["fp32"].hash, False), ("int8", "0" * 16, False),
                               ("distilled", nodes["distilled"].hash, True)):
            (tmp_path / vid).mkdir()
            _publish(api, ids.repo_id(org, mid, vid), tmp_path / vid, h, tamper)
        store = Store(tmp_path / "store")
        fetched = hub_cache.prefetch(loaded, store, [nodes["fp32"], nodes["int8"], nodes["w16a16"]], server.url,
                                     log=lambda *_: None)
        assert fetched == [f"{mid}:fp32"]  # int8 was published from another hash; w16a16 not at all
        art = store.artifact(nodes["fp32"].hash)
        assert sorted(p.name for p in art.iterdir()) == ["config.json", "model.bin", "provenance.json"]
        assert (art / "model.bin").read_bytes() == (tmp_path / "fp32" / "model.bin").read_bytes()
        assert not store.is_built(nodes["int8"].hash) and not store.is_built(nodes["w16a16"].hash)
        with pytest.raises(ZooError, match="model.bin is missing or differs from the sha256 in its provenance"):
            hub_cache.fetch(loaded, store, nodes["distilled"], server.url, log=lambda *_: None)
        assert not store.is_built(nodes["distilled"].hash)
