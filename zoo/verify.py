"""Check what the tool wrote before it is used again: an artifact's files against the sha256s its provenance records,
and every JSON file the tool wrote, each problem as one line that names the file and the command that repairs it.

Stages call :func:`artifact` before they read an artifact (eval, card, push, a child's build) so that damage at rest
(a flipped byte, a truncated copy, a deleted file) stops the run instead of being evaluated or published.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.sources import sha256_file

# Files a staged repo holds that are not the artifact's own bytes: the card, the results beside it, and the adapter
# config whose base path is rewritten to a repo id (see card._rewrite_adapter_base).
STAGED_OWN = frozenset({"README.md", "results.json", "pareto.png", "adapter_config.json"})

# (path, inode, size, mtime_ns, ctime_ns) -> sha256: a file is hashed once per process while it stays unchanged
# (ctime moves on any write, and cannot be set back by a user).
_SEEN: dict[tuple, str] = {}


def rebuild_fix(key: str) -> str:
    return f"run `zoo build {key} --force`"


def sha256_cached(path: Path) -> str:
    st = path.stat()
    k = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if k not in _SEEN:
        _SEEN[k] = sha256_file(path)
    return _SEEN[k]


def read_json(path: Path, fix: str, kind: type = dict) -> Any:
    """Parse a JSON file the tool wrote; damage is a one-line ZooError with ``fix`` (never the file's content).

    Raises:
        ZooError: the file cannot be read, is not JSON, or is not a ``kind``.
    """
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ZooError(f"{path}: missing: {fix}") from None
    except IsADirectoryError:
        raise ZooError(f"{path}: is a folder, not a JSON file: {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at byte {e.pos}" if isinstance(e, json.JSONDecodeError) else ""
        raise ZooError(f"{path}: damaged (not valid JSON{where}, e.g. truncated): {fix}") from None
    if not isinstance(data, kind):
        raise ZooError(f"{path}: damaged (holds a JSON {type(data).__name__}, not an {kind.__name__}): {fix}")
    return data


def provenance(art: Path, key: str) -> dict[str, Any]:
    """The artifact's provenance.json, checked to be the record the build wrote (a mapping of ``files``).

    Raises:
        ZooError: it is missing, not JSON, or lacks its ``files`` record.
    """
    prov = read_json(art / "provenance.json", rebuild_fix(key))
    files = prov.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ZooError(f"{art / 'provenance.json'}: damaged (no 'files' record of sha256s): {rebuild_fix(key)}")
    return prov


def problems(folder: Path, files: dict[str, str], skip: frozenset[str] = frozenset(), prefix: str = "",
             may_lack: tuple[str, ...] = ()) -> list[str]:
    """Each recorded file of ``folder`` that is missing or whose sha256 differs, as ``"<path>: <what>"``.

    Args:
        files: ``{relative path: sha256}`` as provenance records them.
        skip: file names not to check (files a later stage rewrites).
        prefix: check only recorded paths under this folder, found in ``folder`` without it (an adapter repo).
        may_lack: folders a staged copy may leave out; their files are checked only when present.
    """
    out = []
    for rel, sha in files.items():
        if prefix:
            if not rel.startswith(prefix):
                continue
            rel = rel[len(prefix):]
        if Path(rel).name in skip:
            continue
        path = folder / rel
        if not path.is_file():
            if not (may_lack and rel.startswith(may_lack)):
                out.append(f"{path}: missing (provenance records it)")
        elif sha256_cached(path) != sha:
            out.append(f"{path}: sha256 differs from provenance.json's (the file was changed or damaged)")
    return out


def artifact(store, node) -> dict[str, Any]:
    """Check a built artifact against its provenance; return the provenance.

    Raises:
        ZooError: one line per damaged file, each with the fix ``zoo build MODEL:VARIANT --force``.
    """
    art = store.artifact(node.hash)
    prov = provenance(art, node.key)
    bad = problems(art, prov["files"])
    if bad:
        raise ZooError("\n".join(f"{line}: {rebuild_fix(node.key)}" for line in bad))
    return prov


def staged(store, node, folder: Path, prefix: str = "") -> None:
    """Check a staged repo: the artifact it was made from, and every artifact file it holds (hard links or copies);
    without the artifact, the files its own provenance.json records.

    Raises:
        ZooError: one line per damaged file, each with its fix.
    """
    if store.is_built(node.hash):
        files = artifact(store, node)["files"]
    else:  # the artifact left the store (e.g. quarantined): the staged copy's own provenance is what is left
        staged_prov = read_json(folder / "provenance.json", f"run `zoo build {node.key}` and `zoo card {node.key}`") \
            if (folder / "provenance.json").exists() else {}
        files = staged_prov.get("files") if isinstance(staged_prov.get("files"), dict) else {}
    bad = problems(folder, files, skip=STAGED_OWN | {"provenance.json"}, prefix=prefix,
                   may_lack=() if prefix else ("adapter/",))
    if bad:
        raise ZooError("\n".join(f"{line}: run `zoo card {node.key}` to stage it again" for line in bad))


def is_dir_store(root: Path) -> None:
    """Refuse a store root that exists and is not a folder (a file, or a path through a file).

    Raises:
        ZooError: naming ``ZOO_HOME`` when it set the root.
    """
    p = root
    while True:
        if p.exists() and not p.is_dir():
            who = "ZOO_HOME" if os.environ.get("ZOO_HOME") else "the store"
            raise ZooError(f"{who} '{root}': '{p}' is a file, not a folder: point ZOO_HOME at a folder "
                           "(or unset it to use .zoo/ beside registry.yaml)")
        if p.parent == p:
            return
        p = p.parent


def before_push(store, nodes, allow_gate_failure: bool) -> None:
    """Check every staged repo that a push would send, and the artifact it was made from, before any byte is sent.

    Raises:
        ZooError: a damaged artifact, staged file or results.json, one line each with its fix.
    """
    from zoo.status import gate_passed, read_results

    lines: list[str] = []
    for node in nodes:
        try:
            passed = gate_passed(read_results(store, node))
            if passed is None or (not passed and not allow_gate_failure):
                continue
            folder = store.repo(node.model_id, node.variant_id)
            if not folder.is_dir():
                continue  # the push itself says it is not staged
            if (folder / "results.json").exists():
                read_json(folder / "results.json", f"run `zoo card {node.key}` to stage it again")
            staged(store, node, folder)
            adapter = store.repo(node.model_id, f"{node.variant_id}-adapter")
            if adapter.is_dir():
                staged(store, node, adapter, prefix="adapter/")
        except ZooError as e:
            lines += str(e).splitlines()
    if lines:
        raise ZooError("\n".join([*lines, "nothing was pushed"]))
