"""The embedded local hub: repos with commit history, branches, tags and materialised snapshots, in one folder.

Layout (the Space app and ``zoo pull`` rely on it)::

    <hub>/<repo_type>s/<org>/<name>/
        objects/<sha256>                 file contents, content-addressed, read-only
        commits/<commit_id>.json         {"id", "parent", "message", "time", "files": {path: sha256}}
        refs/heads/main                  text: current commit id
        refs/tags/<tag>                  text: commit id
        snapshots/<commit_id>/<files>    the tree of that commit, hard links into objects/
        settings.json                    {"gated": "auto"} once gated
    <hub>/collections/<org>/<title>.json {"title", "items": [{"item_id", "item_type"}]}

A commit writes its objects, then its commit file, then its snapshot, and moves the ref last with ``os.replace``:
a push killed at any point leaves ``main`` on a commit whose files are all there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock
from huggingface_hub import CommitOperationAdd, CommitOperationDelete

from zoo.errors import ZooError
from zoo.hub.base import MOVED, Operation, RepoType
from zoo.store import atomic_dir, atomic_write, read_json, write_json

_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*/[A-Za-z0-9_][A-Za-z0-9._-]*$")


def repo_dir(root: Path, repo_id: str, repo_type: RepoType = "model") -> Path:
    """The folder of a repo in the local hub at ``root``.

    Raises:
        ZooError: ``repo_id`` is not ``org/name``.
    """
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ZooError(f"repo id '{repo_id}' is not valid: use ORG/NAME with letters, digits, '-', '_' and '.'")
    return root / f"{repo_type}s" / repo_id


class LocalHub:
    """A hub in a local folder that behaves like the Hugging Face Hub for push, pull, tags and revisions."""

    name = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, repo_id: str, repo_type: RepoType) -> Path:
        return repo_dir(self.root, repo_id, repo_type)

    def _lock(self, repo: Path) -> FileLock:
        return FileLock(str(repo / ".lock"))

    def create_repo(self, repo_id: str, repo_type: RepoType = "model") -> None:
        repo = self._dir(repo_id, repo_type)
        for sub in ("objects", "commits", "refs/heads", "refs/tags", "snapshots"):
            (repo / sub).mkdir(parents=True, exist_ok=True)

    def head(self, repo_id: str, repo_type: RepoType = "model") -> str | None:
        ref = self._dir(repo_id, repo_type) / "refs" / "heads" / "main"
        return ref.read_text().strip() if ref.is_file() else None

    def resolve(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> str:
        repo = self._dir(repo_id, repo_type)
        if not repo.is_dir():
            raise ZooError(f"{repo_id}: no such {repo_type} repo in the local hub {self.root}: push it first")
        rev = revision or "main"
        for ref in (repo / "refs" / "heads" / rev, repo / "refs" / "tags" / rev):
            if _REF.match(rev) and ref.is_file():
                return ref.read_text().strip()
        if _HEX.match(rev):
            found = sorted(p.stem for p in (repo / "commits").glob(f"{rev}*.json"))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ZooError(f"{repo_id}: revision '{rev}' matches {len(found)} commits: give more digits")
        if revision is None:
            raise ZooError(f"{repo_id}: the repo has no commit yet: push it first")
        tags = sorted(p.name for p in (repo / "refs" / "tags").glob("*"))
        raise ZooError(f"{repo_id}: no branch, tag or commit '{rev}' (branches: main; "
                       f"tags: {', '.join(tags) or 'none'})")

    def _commit_record(self, repo: Path, commit_id: str) -> dict:
        return read_json(repo / "commits" / f"{commit_id}.json")

    def files(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> dict[str, str]:
        repo = self._dir(repo_id, repo_type)
        if not repo.is_dir() or (revision is None and self.head(repo_id, repo_type) is None):
            return {}
        return dict(self._commit_record(repo, self.resolve(repo_id, repo_type, revision))["files"])

    def commit(self, repo_id: str, repo_type: RepoType, operations: list[Operation], message: str,
               parent_commit: str | None) -> str:
        repo = self._dir(repo_id, repo_type)
        if not repo.is_dir():
            raise ZooError(f"{repo_id}: no such {repo_type} repo in the local hub {self.root}: create it first")
        with self._lock(repo):
            head = self.head(repo_id, repo_type)
            if head != parent_commit:
                raise ZooError(f"{repo_id}: {MOVED} (main is at {str(head)[:12]}, "
                               f"you read {str(parent_commit)[:12]})")
            files = dict(self._commit_record(repo, head)["files"]) if head else {}
            for op in operations:
                if isinstance(op, CommitOperationDelete):
                    prefix = op.path_in_repo.rstrip("/") + "/"
                    for path in [p for p in files if p == op.path_in_repo or (op.is_folder and p.startswith(prefix))]:
                        del files[path]
                else:
                    files[op.path_in_repo] = self._store_object(repo, op)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            record = {"parent": head, "message": message, "time": now, "files": dict(sorted(files.items()))}
            commit_id = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
            write_json(repo / "commits" / f"{commit_id}.json", {"id": commit_id, **record})
            self._materialise(repo, commit_id, record["files"])
            atomic_write(repo / "refs" / "heads" / "main", commit_id)
            return commit_id

    def _store_object(self, repo: Path, op: CommitOperationAdd) -> str:
        sha = op.upload_info.sha256.hex()
        obj = repo / "objects" / sha
        if obj.is_file():
            return sha
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{sha}-", dir=repo / "objects")
        try:
            with os.fdopen(fd, "wb") as out:
                src = op.path_or_fileobj
                if isinstance(src, bytes):
                    out.write(src)
                elif isinstance(src, str | Path):
                    with open(src, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
                else:
                    src.seek(0)
                    shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, obj)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return sha

    def _materialise(self, repo: Path, commit_id: str, files: dict[str, str]) -> Path:
        snap = repo / "snapshots" / commit_id
        if snap.is_dir():
            return snap
        with atomic_dir(snap) as tmp:
            for path, sha in files.items():
                _link_or_copy(repo / "objects" / sha, tmp / path)
        return snap

    def tag(self, repo_id: str, repo_type: RepoType, tag: str, revision: str) -> bool:
        if not _REF.match(tag):
            raise ZooError(f"tag '{tag}' is not valid: use letters, digits, '.', '_' and '-'")
        repo = self._dir(repo_id, repo_type)
        commit_id = self.resolve(repo_id, repo_type, revision)
        ref = repo / "refs" / "tags" / tag
        with self._lock(repo):
            if ref.is_file():
                return False
            atomic_write(ref, commit_id)
        return True

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str | None, dest: Path) -> Path:
        repo = self._dir(repo_id, repo_type)
        commit_id = self.resolve(repo_id, repo_type, revision)
        files = self._commit_record(repo, commit_id)["files"]
        self._materialise(repo, commit_id, files)
        dest = Path(dest)
        for path, sha in files.items():
            # a copy, never a link: editing a pulled file must not change the hub's objects
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
            os.close(fd)
            try:
                shutil.copyfile(repo / "objects" / sha, tmp)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return dest

    def read_file(self, repo_id: str, repo_type: RepoType, path: str, revision: str | None = None) -> bytes | None:
        try:
            files = self.files(repo_id, repo_type, revision)
        except ZooError:
            return None
        sha = files.get(path)
        return (self._dir(repo_id, repo_type) / "objects" / sha).read_bytes() if sha else None

    def add_to_collection(self, namespace: str, title: str, repo_id: str, repo_type: RepoType) -> None:
        if not _REF.match(namespace) or not _REF.match(title):
            raise ZooError(f"collection '{namespace}/{title}' is not valid: use letters, digits, '.', '_' and '-'")
        path = self.root / "collections" / namespace / f"{title}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            data = read_json(path) if path.is_file() else {"title": title, "items": []}
            item = {"item_id": repo_id, "item_type": repo_type}
            if item not in data["items"]:
                data["items"].append(item)
                write_json(path, data)

    def set_gated(self, repo_id: str, repo_type: RepoType = "model") -> None:
        path = self._dir(repo_id, repo_type) / "settings.json"
        settings = read_json(path) if path.is_file() else {}
        if settings.get("gated") != "auto":
            write_json(path, {**settings, "gated": "auto"})


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
