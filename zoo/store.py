"""Where everything the tool makes lives, atomic folder writes, and the lock that serialises runs.

Layout under the store root (``$ZOO_HOME``, default ``.zoo/`` beside registry.yaml)::

    artifacts/<hash>/                 a built variant, loadable as is, with provenance.json
    artifacts/<hash>.results.json     its evaluation
    repos/<model>-<variant>/          the staged Hub repo (artifact + card)
    spaces/<model>-demo/              the staged Space
    reports/<model>/                  the family table and Pareto plot
    hub/                              the embedded local hub
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout


class Store:
    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def for_registry(cls, registry_path: Path) -> Store:
        """The store of a registry: ``$ZOO_HOME``, else ``.zoo/`` beside it.

        Raises:
            ZooError: the root exists and is not a folder (it would read as an empty store).
        """
        from zoo.verify import is_dir_store

        env = os.environ.get("ZOO_HOME")
        root = Path(env) if env else registry_path.resolve().parent / ".zoo"
        is_dir_store(root)
        return cls(root)

    def artifact(self, h: str) -> Path:
        return self.root / "artifacts" / h

    def results(self, h: str) -> Path:
        return self.root / "artifacts" / f"{h}.results.json"

    def repo(self, model: str, variant: str) -> Path:
        return self.root / "repos" / f"{model}-{variant}"

    def space(self, model: str) -> Path:
        return self.root / "spaces" / f"{model}-demo"

    def reports(self, model: str) -> Path:
        return self.root / "reports" / model

    @property
    def hub(self) -> Path:
        return Path(os.environ.get("ZOO_LOCAL_HUB", self.root / "hub"))

    def is_built(self, h: str) -> bool:
        """An artifact counts as built only once its provenance (written last, then renamed in) exists."""
        return (self.artifact(h) / "provenance.json").is_file()

    @contextlib.contextmanager
    def lock(self, name: str = "store", log=None) -> Iterator[None]:
        """Hold the store's lock; say who holds it while waiting."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f".{name}.lock"
        pid_path = self.root / f".{name}.pid"
        lock = FileLock(str(lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = pid_path.read_text().strip() if pid_path.exists() else "another process"
            (log or (lambda m: print(m, file=sys.stderr)))(f"waiting for lock held by PID {holder} ({lock_path})")
            lock.acquire()
        try:
            pid_path.write_text(str(os.getpid()))
            yield
        finally:
            with contextlib.suppress(OSError):
                pid_path.unlink()
            lock.release()


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``final``; on success it replaces ``final`` in one rename.

    On any error, or an interrupt, the temp folder is removed and ``final`` is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file so that a reader sees the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path, fix: str = "remove it and run the command that wrote it again") -> Any:
    """Parse a JSON file the tool wrote.

    Raises:
        ZooError: the file is missing, damaged or not JSON: one line naming it and ``fix``.
    """
    from zoo.verify import read_json as checked

    return checked(path, fix, object)


def temp_prefix(name: str) -> str:
    # the writer's PID is in the name, so a sweep removes only temps whose writer is gone
    return f".tmp-{name}-{os.getpid()}p-"


def _writer_gone(name: str, max_age_s: float, mtime: float) -> bool:
    """Whether the process that made temp ``name`` is gone (or, for names without a PID, it is old)."""
    import re
    import time

    m = re.match(r"^\.tmp-.*-(\d+)p-[^-]*$", name) or re.match(r"^\.old-.*-(\d+)$", name)
    if not m:
        return time.time() - mtime > max_age_s
    pid = int(m.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clean_temp(root: Path, max_age_s: float = 3600) -> list[Path]:
    """Remove temp files and folders left by processes killed mid-write, and put back a folder whose replacement
    was interrupted between its two renames; returns what was removed or restored.

    Only temps whose writer is gone are touched (their names carry its PID), so a concurrent writer is safe; a temp
    of the old naming, without a PID, is removed once it is older than ``max_age_s``.
    """
    done: list[Path] = []
    if not root.is_dir():
        return done
    for d in sorted(root.glob("**/.tmp-*"), key=lambda p: len(p.parts), reverse=True):
        try:
            if not _writer_gone(d.name, max_age_s, d.lstat().st_mtime):
                continue
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
            done.append(d)
        except OSError:
            continue
    for old in root.glob("**/.old-*"):
        try:
            if not _writer_gone(old.name, max_age_s, old.lstat().st_mtime):
                continue
            final = old.parent / old.name.removeprefix(".old-").rsplit("-", 1)[0]
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.rename(final)  # killed between moving the old folder aside and renaming the new one in
            done.append(old)
        except OSError:
            continue
    return done


def _fsync_tree(path: Path) -> None:
    """Flush every file to disk and give the tree ordinary permissions (temp folders start private)."""
    path.chmod(0o755)
    for f in path.rglob("*"):
        if f.is_dir():
            f.chmod(0o755)
        elif f.is_file():
            f.chmod(0o644)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
