"""``github:OWNER/REPO@COMMIT#path`` sources: a file or folder of a public repository at a commit, checked by sha256.

:func:`zoo.sources.resolve` first looks for the sha256 among the entries directly inside the mirror folders
(:func:`zoo.sources.mirrors`: ``ZOO_MIRRORS``, default ``../shared/data`` next to the registry); a ``github:`` asset is
a path *inside* a repository, so it is also looked up here as ``<mirror>/<path>`` or ``<mirror>/<any folder>/<path>``
whose sha256 (a file's, or :func:`zoo.sources.sha256_tree` of a folder) is the registry's. Otherwise the commit's
tarball is downloaded from GitHub once into the cache. Data that no package registry ships is reproducible this way,
and never committed.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from zoo.errors import ZooError
from zoo.sources import MIRRORS_ENV, ParsedSource, cache_dir, mirrors, sha256_file, sha256_tree

_VERIFIED: dict[tuple[str, str], bool] = {}  # (path, sha256) checked in this process


def _matches(path: Path, sha256: str | None) -> bool:
    if sha256 is None:
        return True
    key = (str(path), sha256)
    if key not in _VERIFIED:
        _VERIFIED[key] = (sha256_file(path) if path.is_file() else sha256_tree(path)) == sha256
    return _VERIFIED[key]


def resolve_github(p: ParsedSource, sha256: str | None, base_dir: Path, field: str) -> Path:
    """The local path of a ``github:`` asset: a mirror copy with the right sha256, or the cached download.

    Raises:
        ZooError: no mirror holds it and GitHub cannot be reached, or the content does not match sha256.
    """
    rel = p.path or ""
    for root in mirrors(base_dir):
        for candidate in sorted([root / rel, *root.glob(f"*/{rel}")]):
            if candidate.exists() and _matches(candidate, sha256):
                return candidate
    dest = cache_dir() / "github" / p.name.replace("/", "__") / (p.version or "") / rel
    if not dest.exists():
        _download(p, dest, field)
    if not _matches(dest, sha256):
        raise ZooError(f"{field}: sha256 of '{rel}' at {p.name}@{p.version} is not the registry's {sha256}: "
                       "check the commit and path, then update sha256 if the change is intended")
    return dest


def _download(p: ParsedSource, dest: Path, field: str) -> None:
    url = f"https://codeload.github.com/{p.name}/tar.gz/{p.version}"
    tmp = Path(tempfile.mkdtemp(dir=_mkdir(cache_dir() / "github")))
    try:
        archive = tmp / "repo.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=120) as r, open(archive, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise ZooError(f"{field}: '{p.path}' with that sha256 is in no mirror folder ({MIRRORS_ENV}, default "
                           f"../shared/data) and {url} cannot be fetched ({e}): set {MIRRORS_ENV} to a folder "
                           "holding a copy, or connect to the network") from None
        with tarfile.open(archive) as t:
            top = t.getmembers()[0].name.split("/")[0]
            prefix = f"{top}/{p.path}"
            members = [m for m in t.getmembers() if m.name == prefix or m.name.startswith(prefix + "/")]
            if not members:
                raise ZooError(f"{field}: '{p.path}' is not in {p.name}@{p.version}: fix the path")
            t.extractall(tmp / "x", members=members, filter="data")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "x" / prefix, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
