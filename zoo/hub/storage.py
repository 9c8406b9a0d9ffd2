"""The embedded hub's storage: a content-addressed object store with repos, commits, branches, tags and collections.

Layout under the hub root::

    objects/<sha256[:2]>/<sha256>            file contents, shared by every repo, read-only
    quarantine/<sha256>                      objects that failed their content check (kept for inspection)
    repos/<type>s/<org>/<name>/
        settings.json                        {"private": bool, "gated": false | "auto" | "manual", "sdk": ...}
        commits/<commit_id>.json             {"id", "parent", "message", "time", "files": {path: File}}
        refs/heads/main, refs/tags/<tag>     text: a commit id
    collections/<namespace>/<slug>.json      {"slug", "title", "items": [{"id", "type"}]}
    token                                    the write token ``zoo hub serve`` accepts (0600)

A commit writes its objects first, then its commit record, and moves the branch last with ``os.replace``, so a
writer killed at any point leaves every ref on a whole commit. Objects are checked against their sha256 before they
are served (once per file state); one that fails is moved to ``quarantine/`` and reported missing, so the next push
uploads it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from filelock import FileLock

from zoo.store import atomic_write, clean_temp, read_json, temp_prefix, write_json

RepoType = Literal["model", "dataset", "space"]
REPO_TYPES = ("model", "dataset", "space")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,95}$")
REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
HEX = re.compile(r"^[0-9a-f]{7,40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class HubStorageError(Exception):
    """A request the storage refuses; ``code`` is the Hub's X-Error-Code where one exists."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit: its content address, size, git blob id, and whether it is stored as LFS."""

    sha256: str
    size: int
    oid: str  # git blob sha1 of the content (regular) or of the LFS pointer (LFS), as the Hub reports it
    lfs: bool

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "oid": self.oid, "lfs": self.lfs}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FileEntry:
        return cls(d["sha256"], int(d["size"]), d["oid"], bool(d["lfs"]))


@dataclass
class Commit:
    id: str
    parent: str | None
    message: str
    time: str
    files: dict[str, FileEntry] = field(default_factory=dict)


def check_path(path: str) -> str:
    """A repo path as the Hub accepts it: relative, posix, no '..' or empty parts."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise HubStorageError(400, f"Invalid path in repo: '{path}'")
    return path


class HubStorage:
    """The hub's folder. Safe for threads of one process and for several processes on one folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._verified: dict[str, tuple[int, int, int]] = {}  # sha256 -> (inode, size, mtime_ns) last checked
        self._mutex = threading.Lock()
        for sub in ("objects", "tmp", "repos", "collections"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        clean_temp(self.root / "tmp")  # uploads of killed processes (a live writer's temps carry its PID)

    # -- tokens ------------------------------------------------------------------------------------------------

    def token(self) -> str:
        """The write token of this hub, created on first use and kept in ``token`` (owner-readable only)."""
        path = self.root / "token"
        if not path.is_file():
            with FileLock(str(self.root / ".token.lock")):
                if not path.is_file():
                    fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-token-")
                    with os.fdopen(fd, "w") as f:
                        f.write(f"zoo_{secrets.token_hex(20)}")
                    os.replace(tmp, path)
        return path.read_text().strip()

    # -- objects -----------------------------------------------------------------------------------------------

    def object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def put_object(self, src: IO[bytes] | bytes, expected: str | None = None,
                   size: int | None = None) -> tuple[str, int]:
        """Store content; returns (sha256, size). Refuses content that does not match ``expected``/``size``."""
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix("obj"), dir=self.root / "tmp")
        digest, n = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                chunks: Iterable[bytes] = [src] if isinstance(src, bytes) else iter(lambda: src.read(_CHUNK), b"")
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    n += len(chunk)
            sha = digest.hexdigest()
            if (expected and sha != expected) or (size is not None and n != size):
                raise HubStorageError(400, f"uploaded content does not match its oid {expected} "
                                           f"(got sha256 {sha}, {n} bytes, expected {size})")
            final = self.object_path(sha)
            if not self.has_object(sha):
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
            return sha, n
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def has_object(self, sha256: str) -> bool:
        return self.object_path(sha256).is_file()

    def verified_object(self, sha256: str) -> Path | None:
        """The object's path if its content still hashes to its name; a damaged one is quarantined (None)."""
        path = self.object_path(sha256)
        try:
            st = path.stat()
        except OSError:
            return None
        state = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(sha256) == state:
            return path
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            self.quarantine(sha256)
            return None
        with self._mutex:
            self._verified[sha256] = state
        return path

    def quarantine(self, sha256: str) -> None:
        dest = self.root / "quarantine" / sha256
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.object_path(sha256), dest)
        with self._mutex:
            self._verified.pop(sha256, None)

    # -- repos -------------------------------------------------------------------------------------------------

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        parts = repo_id.split("/")
        if repo_type not in REPO_TYPES or len(parts) != 2 or not all(NAME.match(p) for p in parts) \
                or ".." in repo_id:
            raise HubStorageError(400, f"Invalid repo id '{repo_id}': use ORG/NAME with letters, digits, '-', "
                                       "'_' and '.'")
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.repo_dir(repo_type, repo_id) / "settings.json").is_file()

    def _lock(self, repo: Path) -> FileLock:
        return FileLock(str(repo / ".lock"))

    def create(self, repo_type: str, repo_id: str, private: bool = False, sdk: str | None = None) -> bool:
        """Create a repo; False if it already existed (left as it is)."""
        repo = self.repo_dir(repo_type, repo_id)
        repo.mkdir(parents=True, exist_ok=True)
        with self._lock(repo):
            if (repo / "settings.json").is_file():
                return False
            for sub in ("commits", "refs/heads", "refs/tags"):
                (repo / sub).mkdir(parents=True, exist_ok=True)
            write_json(repo / "settings.json", {"private": bool(private), "gated": False, "sdk": sdk,
                                                "created": _now()})
        return True

    def settings(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        return read_json(self.repo_dir(repo_type, repo_id) / "settings.json")

    def update_settings(self, repo_type: str, repo_id: str, **changes: Any) -> None:
        repo = self.repo_dir(repo_type, repo_id)
        with self._lock(repo):
            write_json(repo / "settings.json", {**self.settings(repo_type, repo_id), **changes})

    def head(self, repo_type: str, repo_id: str, branch: str = "main") -> str | None:
        ref = self.repo_dir(repo_type, repo_id) / "refs" / "heads" / branch
        return ref.read_text().strip() if ref.is_file() else None

    def refs(self, repo_type: str, repo_id: str) -> dict[str, dict[str, str]]:
        repo = self.repo_dir(repo_type, repo_id)
        out: dict[str, dict[str, str]] = {"branches": {}, "tags": {}}
        for kind, sub in (("branches", "heads"), ("tags", "tags")):
            for ref in sorted((repo / "refs" / sub).glob("*")):
                if not ref.name.startswith("."):
                    out[kind][ref.name] = ref.read_text().strip()
        return out

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str | None:
        """The commit id a branch, tag, commit id or unique commit-id prefix (7+ hex) names; None if none."""
        repo = self.repo_dir(repo_type, repo_id)
        if REF.match(revision):
            for sub in ("heads", "tags"):
                ref = repo / "refs" / sub / revision
                if ref.is_file():
                    return ref.read_text().strip()
        if HEX.match(revision):
            found = [p.stem for p in (repo / "commits").glob(f"{revision}*.json")]
            if len(found) == 1:
                return found[0]
        return None

    def commit_record(self, repo_type: str, repo_id: str, commit_id: str) -> Commit:
        d = read_json(self.repo_dir(repo_type, repo_id) / "commits" / f"{commit_id}.json")
        return Commit(d["id"], d["parent"], d["message"], d["time"],
                      {p: FileEntry.from_json(f) for p, f in d["files"].items()})

    def history(self, repo_type: str, repo_id: str, commit_id: str | None) -> Iterator[Commit]:
        while commit_id:
            c = self.commit_record(repo_type, repo_id, commit_id)
            yield c
            commit_id = c.parent

    def commit(self, repo_type: str, repo_id: str, branch: str, parent: str | None, message: str,
               adds: dict[str, FileEntry], deletes: list[str], delete_folders: list[str]) -> str:
        """Apply one commit on ``branch`` if it still points at ``parent`` (when given); returns the commit id.

        Raises:
            HubStorageError: the branch moved (412), or an added object is not in the store (422).
        """
        repo = self.repo_dir(repo_type, repo_id)
        missing = sorted(p for p, f in adds.items() if not self.has_object(f.sha256))
        if missing:
            raise HubStorageError(422, f"LFS file(s) not uploaded before the commit: {', '.join(missing)}")
        with self._lock(repo):
            head = self.head(repo_type, repo_id, branch)
            if parent is not None and head != parent:
                raise HubStorageError(412, f"A commit has happened since. Please refresh and try again. "
                                           f"(branch {branch} is at {head}, parentCommit is {parent})")
            files = dict(self.commit_record(repo_type, repo_id, head).files) if head else {}
            for path in deletes:
                if path not in files:
                    raise HubStorageError(404, f"File not found in repo: {path}", "EntryNotFound")
                del files[path]
            for folder in delete_folders:
                prefix = folder.rstrip("/") + "/"
                for path in [p for p in files if p.startswith(prefix)]:
                    del files[path]
            files.update(adds)
            record = {"parent": head, "message": message, "time": _now(),
                      "files": {p: files[p].to_json() for p in sorted(files)}}
            commit_id = hashlib.sha1(_canonical(record) + secrets.token_bytes(8)).hexdigest()
            write_json(repo / "commits" / f"{commit_id}.json", {"id": commit_id, **record})
            atomic_write(repo / "refs" / "heads" / branch, commit_id)
            return commit_id

    def create_tag(self, repo_type: str, repo_id: str, tag: str, commit_id: str) -> None:
        if not REF.match(tag):
            raise HubStorageError(400, f"Invalid tag name '{tag}': use letters, digits, '.', '_' and '-'")
        repo = self.repo_dir(repo_type, repo_id)
        with self._lock(repo):
            ref = repo / "refs" / "tags" / tag
            if ref.is_file():
                raise HubStorageError(409, f"Tag {tag} already exists")
            atomic_write(ref, commit_id)

    def delete_tag(self, repo_type: str, repo_id: str, tag: str) -> None:
        ref = self.repo_dir(repo_type, repo_id) / "refs" / "tags" / tag
        if not REF.match(tag) or not ref.is_file():
            raise HubStorageError(404, f"Tag {tag} not found", "RevisionNotFound")
        ref.unlink()

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        shutil.rmtree(self.repo_dir(repo_type, repo_id))

    def repos(self) -> Iterator[tuple[str, str]]:
        for repo_type in REPO_TYPES:
            base = self.root / "repos" / f"{repo_type}s"
            for settings in sorted(base.glob("*/*/settings.json")):
                yield repo_type, settings.parent.relative_to(base).as_posix()

    # -- collections -------------------------------------------------------------------------------------------

    def collection_path(self, slug: str) -> Path:
        namespace, _, name = slug.partition("/")
        if not NAME.match(namespace) or not NAME.match(name):
            raise HubStorageError(404, f"Collection {slug} not found")
        return self.root / "collections" / namespace / f"{name}.json"

    def create_collection(self, namespace: str, title: str) -> tuple[dict[str, Any], bool]:
        """The collection ``title`` of ``namespace`` and whether it was created now."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-") or "collection"
        slug = f"{namespace}/{name}"
        path = self.collection_path(slug)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.is_file():
                return read_json(path), False
            data = {"slug": slug, "title": title, "namespace": namespace, "items": [], "updated": _now()}
            write_json(path, data)
            return data, True

    def collection(self, slug: str) -> dict[str, Any]:
        path = self.collection_path(slug)
        if not path.is_file():
            raise HubStorageError(404, f"Collection {slug} not found")
        return read_json(path)

    def add_collection_item(self, slug: str, item_id: str, item_type: str) -> tuple[dict[str, Any], bool]:
        path = self.collection_path(slug)
        with FileLock(str(path) + ".lock"):
            data = self.collection(slug)
            item = {"id": item_id, "type": item_type}
            if item in data["items"]:
                return data, False
            data["items"].append(item)
            data["updated"] = _now()
            write_json(path, data)
            return data, True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _canonical(d: dict) -> bytes:
    import json

    return json.dumps(d, sort_keys=True).encode()


@dataclass
class FsckReport:
    """What ``fsck`` found: objects checked, damaged ones (quarantined when repairing), commits naming a missing
    object, and unreadable commit records."""

    objects: int = 0
    damaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "type:repo@commit path sha256"
    unreadable: list[str] = field(default_factory=list)
    temp_removed: int = 0

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.missing or self.unreadable)

    def lines(self) -> list[str]:
        out = [f"hub: {self.objects} objects checked, {len(self.damaged)} damaged, {len(self.missing)} files "
               f"missing from the store, {len(self.unreadable)} unreadable commit records"]
        out += [f"damaged object {s} (quarantined)" for s in self.damaged]
        out += [f"missing object: {m} (push the variant again to restore it)" for m in self.missing]
        out += [f"unreadable commit record: {u}" for u in self.unreadable]
        return out


def fsck(root: Path, repair: bool = False) -> FsckReport:
    """Check every object of the hub at ``root`` against its sha256 and every commit's files against the store.

    With ``repair``, damaged objects are moved to ``quarantine/`` (so the hub reports them missing and the next
    ``zoo push`` uploads them again) and temp files of interrupted uploads are removed. Nothing else is changed:
    a missing object can only come back from a push.
    """
    storage = HubStorage(root)
    report = FsckReport()
    for obj in sorted((storage.root / "objects").glob("*/*")):
        if obj.name.startswith(".tmp-"):
            continue
        report.objects += 1
        digest = hashlib.sha256()
        with open(obj, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != obj.name:
            report.damaged.append(obj.name)
            if repair:
                storage.quarantine(obj.name)
    for repo_type, repo_id in storage.repos():
        commits = storage.repo_dir(repo_type, repo_id) / "commits"
        for rec in sorted(commits.glob("*.json")):
            try:
                c = storage.commit_record(repo_type, repo_id, rec.stem)
            except (OSError, ValueError, KeyError, TypeError):
                report.unreadable.append(f"{repo_type}:{repo_id} {rec.name}")
                continue
            for path, f in c.files.items():
                if f.sha256 in report.damaged or not storage.has_object(f.sha256):
                    report.missing.append(f"{repo_type}:{repo_id}@{c.id[:12]} {path} {f.sha256[:12]}")
    if repair:
        for tmp in (storage.root / "tmp").glob(".tmp-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                report.temp_removed += 1
    return report
