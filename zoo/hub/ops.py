"""Plan a commit: compare a staged folder with what a repo holds and keep only the files that changed.

A repo reports each file's digest either as a sha256 (64 hex: the local hub, and LFS files on the Hugging Face Hub)
or as a git blob sha1 (40 hex: small files on the Hugging Face Hub). Both are computed locally in one read, so a
file is re-sent only when its content differs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete

# Files a Hub repo holds that the staged folder never does; deleting them would break the repo (LFS rules).
PROTECTED = frozenset({".gitattributes"})
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Digest:
    sha256: str
    git_sha1: str
    size: int

    def matches(self, remote: str) -> bool:
        """True if ``remote`` (a sha256 or a git blob sha1) names this content."""
        return remote in (self.sha256, self.git_sha1)


def file_digest(path: Path) -> Digest:
    """The sha256 and git blob sha1 of a file, in one read."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return Digest(sha256.hexdigest(), sha1.hexdigest(), size)


def local_files(folder: Path) -> dict[str, Path]:
    """Every regular file under ``folder`` by its repo path (posix), skipping temp files of interrupted writes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".tmp-"))
        for name in sorted(filenames):
            if name.startswith(".tmp-"):
                continue
            path = Path(dirpath) / name
            out[path.relative_to(folder).as_posix()] = path
    return out


@dataclass
class Plan:
    """The operations that turn the repo's files into the staged folder's, and what they cost."""

    adds: list[CommitOperationAdd] = field(default_factory=list)
    deletes: list[CommitOperationDelete] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # repo path -> bytes, for each add

    @property
    def operations(self) -> list[CommitOperationAdd | CommitOperationDelete]:
        return [*self.adds, *self.deletes]

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())

    @property
    def empty(self) -> bool:
        return not self.adds and not self.deletes

    def describe(self) -> list[str]:
        """One line per operation: ``+ path (size)`` or ``- path``."""
        lines = [f"+ {op.path_in_repo} ({human_bytes(self.sizes[op.path_in_repo])})" for op in self.adds]
        return lines + [f"- {op.path_in_repo}" for op in self.deletes]


def plan(folder: Path, remote: Mapping[str, str]) -> Plan:
    """The operations that make a repo holding ``remote`` ({path: digest}) hold exactly the files of ``folder``.

    Files whose content is unchanged are left out, so an unchanged folder gives an empty plan. Protected files
    (``.gitattributes``) the folder lacks are kept.
    """
    out = Plan()
    local = local_files(folder)
    for rel, path in local.items():
        d = file_digest(path)
        if rel in remote and d.matches(remote[rel]):
            continue
        out.adds.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)))
        out.sizes[rel] = d.size
    for rel in sorted(remote):
        if rel not in local and rel not in PROTECTED:
            out.deletes.append(CommitOperationDelete(path_in_repo=rel))
    return out


def holds(remote: Mapping[str, str], operations: list) -> bool:
    """True if a repo holding ``remote`` already reflects every operation (used to recognise a commit that landed)."""
    for op in operations:
        if isinstance(op, CommitOperationDelete):
            if op.path_in_repo in remote:
                return False
        elif op.path_in_repo not in remote or not _op_digest(op).matches(remote[op.path_in_repo]):
            return False
    return True


def _op_digest(op: CommitOperationAdd) -> Digest:
    src = op.path_or_fileobj
    if isinstance(src, str | Path):
        return file_digest(Path(src))
    data = src if isinstance(src, bytes) else (src.seek(0), src.read())[1]
    return Digest(hashlib.sha256(data).hexdigest(), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                  len(data))


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
