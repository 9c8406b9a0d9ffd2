"""The store every node sees: built artifacts and their results on a local path or an fsspec URI (``s3://…``).

Object stores have no rename, so an artifact becomes visible by one final marker object::

    <url>/builds/<hash>/<upload-id>/<files>   the files of one upload (invisible until a marker names it)
    <url>/builds/<hash>.json                  the marker: {"upload": <upload-id>, "files": {path: sha256}}
    <url>/builds/<hash>.results.json          the evaluation, one object written in one put

A worker killed mid-upload leaves only an unnamed upload folder, which never counts. Two workers that build the
same hash both upload; the first marker wins, and a loser removes its own upload, so one artifact remains. Every
file fetched to a node is checked against the sha256 in the marker and in the artifact's provenance.json.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from zoo.errors import ZooError
from zoo.sources import sha256_file
from zoo.store import Store, atomic_dir, write_json


def store_url(registry_store: str | None, local: Store) -> str:
    """``ZOO_STORE`` if set, else the registry's ``store:``, else ``shared/`` inside the local store."""
    return os.environ.get("ZOO_STORE") or registry_store or str(local.root / "shared")


class RemoteStore:
    def __init__(self, url: str):
        import fsspec

        self.url = url
        try:
            self.fs, self.base = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as e:
            raise ZooError(f"store '{url}': {e} (set ZOO_STORE to a local path or an s3://bucket/prefix URI; "
                           "s3 needs `pip install s3fs`)") from None
        self.base = self.base.rstrip("/")

    def _parent(self, path: str) -> str:
        """A local filesystem needs a path's folders made first; object stores have none to make."""
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        if {"file", "local"} & set(protocols):
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        return path

    def _marker(self, h: str) -> str:
        return f"{self.base}/builds/{h}.json"

    def _results(self, h: str) -> str:
        return f"{self.base}/builds/{h}.results.json"

    def _read_json(self, path: str) -> dict | None:
        self.fs.invalidate_cache()
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def has(self, h: str) -> bool:
        return self._read_json(self._marker(h)) is not None

    def put(self, h: str, local: Store) -> bool:
        """Upload the built artifact ``h`` from ``local``; returns False when another upload already won."""
        if self.has(h):
            return False
        src = local.artifact(h)
        files = {p.relative_to(src).as_posix(): sha256_file(p) for p in sorted(src.rglob("*")) if p.is_file()}
        upload = uuid.uuid4().hex
        prefix = f"{self.base}/builds/{h}/{upload}"
        for rel in files:
            self.fs.put_file(str(src / rel), self._parent(f"{prefix}/{rel}"))
        if self.has(h):  # another worker finished first: keep its artifact, drop ours
            self.fs.rm(prefix, recursive=True)
            return False
        marker = json.dumps({"upload": upload, "files": files}, sort_keys=True).encode()
        self.fs.pipe_file(self._parent(self._marker(h)), marker)
        won = (self._read_json(self._marker(h)) or {}).get("upload") == upload
        if not won:
            self.fs.rm(prefix, recursive=True)
        return won

    def fetch(self, h: str, local: Store) -> Path:
        """Download artifact ``h`` into ``local`` (unless there already), verifying every file's sha256."""
        if local.is_built(h):
            return local.artifact(h)
        marker = self._read_json(self._marker(h))
        if marker is None:
            raise ZooError(f"artifact {h} is not in the store {self.url}: build it first (`zoo build`)")
        prefix = f"{self.base}/builds/{h}/{marker['upload']}"
        with atomic_dir(local.artifact(h)) as out:
            for rel, want in marker["files"].items():
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{prefix}/{rel}", str(out / rel))
                if sha256_file(out / rel) != want:
                    raise ZooError(f"artifact {h} in {self.url}: {rel} does not match its sha256 in the marker; "
                                   f"remove {self._marker(h)} and build it again")
            verify_provenance(out, h, self.url)
        return local.artifact(h)

    def put_results(self, h: str, results: dict) -> None:
        text = json.dumps(results, indent=2, sort_keys=True, default=str) + "\n"
        self.fs.pipe_file(self._parent(self._results(h)), text.encode())

    def fetch_results(self, h: str, local: Store) -> dict | None:
        results = self._read_json(self._results(h))
        if results is not None:
            write_json(local.results(h), results)
        return results


def verify_provenance(folder: Path, h: str, where: str) -> None:
    """Every file provenance.json lists is present with its sha256, and the provenance names hash ``h``.

    Raises:
        ZooError: naming the first file that differs and where the artifact came from.
    """
    prov_path = folder / "provenance.json"
    if not prov_path.is_file():
        raise ZooError(f"artifact {h} from {where} has no provenance.json: build it again")
    prov = json.loads(prov_path.read_text())
    if prov.get("hash") != h:
        raise ZooError(f"artifact {h} from {where}: its provenance.json is for hash {prov.get('hash')}; "
                       "build it again")
    for rel, want in prov.get("files", {}).items():
        path = folder / rel
        if not path.is_file() or sha256_file(path) != want:
            raise ZooError(f"artifact {h} from {where}: {rel} is missing or differs from the sha256 in its "
                           "provenance.json; build it again")
