"""The hub as a remote cache: a variant whose published artifact has the same content hash is fetched, not built.

The published repo's head carries the artifact's provenance.json; when its ``hash`` equals the planned hash, the
files it lists are downloaded (huggingface_hub, from any endpoint speaking the Hub API: huggingface.co or the
embedded hub) and checked against their sha256 before the artifact enters the store.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from zoo import ids
from zoo.errors import ZooError
from zoo.plan import Node
from zoo.registry import Loaded
from zoo.remote_store import verify_provenance
from zoo.store import Store, atomic_dir

HF = "https://huggingface.co"


def endpoint_of(hub: str) -> str:
    """``hf`` → huggingface.co; ``env`` → ``$HF_ENDPOINT``; otherwise the URL given."""
    if hub == "hf":
        return HF
    if hub == "env":
        if not os.environ.get("HF_ENDPOINT"):
            raise ZooError("--hub-cache env: set HF_ENDPOINT to the hub's URL, or pass the URL itself")
        return os.environ["HF_ENDPOINT"]
    if not hub.startswith(("http://", "https://")):
        raise ZooError(f"--hub-cache {hub}: give hf, env or the hub's URL (http://127.0.0.1:8765)")
    return hub.rstrip("/")


def fetch(loaded: Loaded, store: Store, node: Node, hub: str, log=print) -> bool:
    """Put ``node``'s artifact into ``store`` from the hub when the published one has its hash; True if it did."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    endpoint = endpoint_of(hub)
    api = HfApi(endpoint=endpoint, token=os.environ.get("HF_TOKEN") or None)
    repo = ids.repo_id(loaded.registry.org, node.model_id, node.variant_id)
    tmp = Path(tempfile.mkdtemp(prefix="zoo-hub-cache-"))
    try:
        try:
            prov_path = api.hf_hub_download(repo, "provenance.json", local_dir=tmp / "head")
        except (HfHubHTTPError, OSError, ValueError):
            return False  # not published, or not reachable: build it
        prov = json.loads(Path(prov_path).read_text())
        if prov.get("hash") != node.hash:
            return False
        files = sorted(prov.get("files", {}))
        got = Path(api.snapshot_download(repo, allow_patterns=[*files, "provenance.json"], local_dir=tmp / "repo"))
        with atomic_dir(store.artifact(node.hash)) as out:
            for rel in [*files, "provenance.json"]:
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(got / rel, out / rel)
            verify_provenance(out, node.hash, f"{endpoint}/{repo}")
        log(f"{node.key}: fetched from {endpoint}/{repo} (same hash {node.hash}), not built")
        return True
    except (HfHubHTTPError, OSError) as e:
        log(f"{node.key}: hub cache unavailable ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "building it")
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prefetch(loaded: Loaded, store: Store, nodes: list[Node], hub: str, log=print) -> list[str]:
    """Fetch every unbuilt node the hub already has; returns the keys fetched."""
    return [n.key for n in nodes if not store.is_built(n.hash) and fetch(loaded, store, n, hub, log=log)]
