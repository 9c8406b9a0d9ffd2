"""The build plan: every variant in dependency order, with a content hash that decides whether to rebuild.

A variant's hash covers its registry entry, its recipe, its parent's hash, the base and data sources, and the
versions of the libraries that build it. Same hash + built artifact = nothing to do.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata
from io import BytesIO
from pathlib import Path
from typing import Any

from zoo import registry
from zoo.errors import UsageError, ZooError
from zoo.registry import Loaded

# Bump when the layout or meaning of built artifacts changes, so every hash moves.
BUILD_FORMAT = 1
LIBRARIES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "onnxruntime-genai", "peft", "bitsandbytes",
             "safetensors", "accelerate")


def library_versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Node:
    model_id: str
    variant_id: str
    kind: str
    parent: str  # "base" or a variant id
    recipe: str
    technique: str
    target: str
    hash: str  # 16 hex digits of the content hash; names the artifact folder
    inputs: dict[str, str]  # the hashed parts, for provenance

    @property
    def key(self) -> str:
        return f"{self.model_id}:{self.variant_id}"


def make(loaded: Loaded) -> list[Node]:
    """Every variant of every model, parents before children, each with its content hash."""
    libs = digest(library_versions())
    nodes: list[Node] = []
    code_hashes: dict[type, str] = {}
    for mid, model in loaded.registry.models.items():
        base_h = digest(model.base.model_dump(mode="json"))
        data_h = digest(model.dataset.model_dump(mode="json"))
        task_h = digest({"task": model.task, "trust_remote_code": model.trust_remote_code})
        hashes: dict[str, str] = {"base": base_h}
        for vid in _order(model.variants):
            v = model.variants[vid]
            recipe = loaded.recipe_of(v)
            recipe_h = digest({k: val for k, val in recipe.raw.items() if k != "description"})
            # gate_of only changes the evaluation, whose own hash (zoo.evaluate.eval_hash) covers the reference
            entry_h = digest(v.model_dump(mode="json", by_alias=True, exclude={"description", "gate_of"}))
            target_h = digest(loaded.registry.targets[v.target].model_dump(mode="json"))
            if type(recipe.technique) not in code_hashes:
                code_hashes[type(recipe.technique)] = technique_code_hash(recipe.technique)
            code_h = code_hashes[type(recipe.technique)]
            # the variant's identity is hashed too: two variants with the same content are still two artifacts
            # (their provenance, results and cards name them), never one shared under both names
            inputs = {"model": mid, "variant": vid, "entry": entry_h, "code": code_h, "recipe": recipe_h,
                      "parent": hashes[v.from_], "base": base_h,
                      "data": data_h, "task": task_h, "target": target_h, "libraries": libs,
                      "format": str(BUILD_FORMAT)}
            h = digest(inputs)[:16]
            hashes[vid] = h
            nodes.append(Node(mid, vid, v.kind.value, v.from_, v.recipe, recipe.technique.name, v.target, h, inputs))
    return nodes


def technique_code_hash(technique) -> str:
    """Hash of the technique's module and of every project module it imports, directly or not (see
    :func:`import_closure`): changed code rebuilds the variants it makes, and only those."""
    import inspect

    h = hashlib.sha256()
    for f in sorted(import_closure(Path(inspect.getfile(type(technique)))), key=str):
        h.update(f.read_bytes())
    return h.hexdigest()


PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding the zoo package
# Modules that choose, order, log or store what runs but compute nothing an artifact holds: the closure stops there.
# (The registry entry and the recipe are hashed as data; without this stop every technique would hash the whole zoo.)
HASH_BOUNDARY = frozenset({"zoo/plan.py", "zoo/status.py", "zoo/store.py", "zoo/progress.py", "zoo/registry",
                           "zoo/families/__init__.py", "zoo/techniques/__init__.py", "zoo/techniques/registry.py"})


def import_closure(start: Path) -> set[Path]:
    """``start`` and every project module it imports, transitively, read with the AST: imports inside functions
    count, relative imports resolve in the module's own folder (plugin families), and third-party modules do not
    count (their versions are hashed separately). ``from package import name`` counts the package's
    ``__init__.py`` only when ``name`` is not a module of its own.
    """
    seen: set[Path] = set()
    todo = [start.resolve()]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += _project_imports(f)
    return seen


# parsed imports per (file, mtime, size): every plan parses the same modules for each technique, many times a run
_IMPORTS: dict[tuple[Path, int, int], list[Path]] = {}


def _project_imports(f: Path) -> list[Path]:
    """The project modules that module ``f`` imports directly (see :func:`import_closure`)."""
    import ast

    st = f.stat()
    key = (f, st.st_mtime_ns, st.st_size)
    if key not in _IMPORTS:
        found: list[Path] = []
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                found += [m for a in node.names if (m := _module_file(a.name, 0, f)) is not None]
            elif isinstance(node, ast.ImportFrom):
                subs = [_module_file(f"{node.module or ''}.{a.name}".lstrip("."), node.level, f) for a in node.names]
                found += [m for m in subs if m is not None]
                if None in subs and (base := _module_file(node.module or "", node.level, f)) is not None:
                    found.append(base)
        _IMPORTS[key] = found
    return _IMPORTS[key]


def _module_file(name: str, level: int, importer: Path) -> Path | None:
    """The file of project module ``name`` (relative ``level`` dots from ``importer``), or None if it is not one."""
    if level:
        folder = importer.parent
        for _ in range(level - 1):
            folder = folder.parent
    elif name == "zoo" or name.startswith("zoo."):
        folder = PACKAGE_ROOT
    else:
        return None
    path = folder.joinpath(*name.split(".")) if name else folder
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return None if _at_boundary(candidate.resolve()) else candidate.resolve()
    return None


def _at_boundary(path: Path) -> bool:
    try:
        rel = path.relative_to(PACKAGE_ROOT).as_posix()
    except ValueError:
        return False
    return any(rel == b or rel.startswith(b + "/") for b in HASH_BOUNDARY)


def _order(variants: dict) -> list[str]:
    """Variants with each parent before its children, otherwise in registry order (iterative: chains of any depth)."""
    done: list[str] = []
    seen: set[str] = set()
    for vid in variants:
        chain = []
        cur = vid
        while cur not in seen and cur in variants:
            seen.add(cur)
            chain.append(cur)
            cur = variants[cur].from_
        done += reversed(chain)
    return done


def select(nodes: list[Node], pairs: list[tuple[str, str]], with_parents: bool = True) -> list[Node]:
    """The nodes named by ``pairs`` and, if asked, every ancestor they need, in plan order."""
    by_key = {n.key: n for n in nodes}
    want = {f"{m}:{v}" for m, v in pairs}
    if with_parents:
        stack = list(want)
        while stack:
            n = by_key[stack.pop()]
            if n.parent != "base" and (pk := f"{n.model_id}:{n.parent}") not in want:
                want.add(pk)
                stack.append(pk)
    return [n for n in nodes if n.key in want]


def load_at_revision(registry_path: Path, ref: str) -> Loaded | None:
    """The registry (and its recipes) as committed at git ``ref``; None if the file did not exist there."""
    repo_root = _git(["rev-parse", "--show-toplevel"], registry_path.parent).strip()
    rel = registry_path.resolve().relative_to(Path(repo_root).resolve())
    prefix = rel.parent.as_posix()
    paths = [rel.as_posix(), f"{prefix}/recipes" if prefix != "." else "recipes"]
    try:
        _git(["rev-parse", "--verify", f"{ref}^{{commit}}"], Path(repo_root))
    except ZooError:
        raise UsageError(f"--since: '{ref}' is not a git revision here (fetch it first, e.g. "
                         f"`git fetch origin main`)") from None
    proc = subprocess.run(["git", "archive", ref, "--", *paths], cwd=repo_root, capture_output=True)
    if proc.returncode != 0:
        proc = subprocess.run(["git", "archive", ref, "--", paths[0]], cwd=repo_root, capture_output=True)
        if proc.returncode != 0:
            return None
    tmp = Path(tempfile.mkdtemp(prefix="zoo-since-"))
    with tarfile.open(fileobj=BytesIO(proc.stdout)) as tar:
        tar.extractall(tmp, filter="data")
    return registry.load(tmp / rel)


def diff(old: list[Node] | None, new: list[Node]) -> dict[str, list[str]]:
    """What changed between two plans: added, changed (hash moved), removed and unchanged variant keys."""
    before = {n.key: n.hash for n in old or []}
    after = {n.key: n.hash for n in new}
    return {
        "added": [k for k in after if k not in before],
        "changed": [k for k in after if k in before and before[k] != after[k]],
        "removed": [k for k in before if k not in after],
        "unchanged": [k for k in after if before.get(k) == after[k]],
    }


def _git(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ZooError(f"git {' '.join(args)}: {proc.stderr.strip().splitlines()[-1] if proc.stderr else 'failed'}")
    return proc.stdout
