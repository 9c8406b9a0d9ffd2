"""Task families, one folder each, and the registry the stages ask: :func:`family_of` a registry ``task:``.

A family is a folder whose ``family.py`` defines ``FAMILY`` (a :class:`zoo.families.base.Family`). The built-in
ones are listed in :data:`BUILTIN`; a project adds its own with one line in registry.yaml
(``families: [path/to/folder]``), loaded by :func:`load_plugin`. Two families claiming one task or one artifact
format is an error, as two techniques of one name are.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from zoo.errors import ZooError, did_you_mean
from zoo.families.base import Family, PerfModel, Scores

# the built-in families, by folder name under zoo/families/
BUILTIN = ("text_classification", "image_classification", "text_generation", "object_detection",
           "speech_recognition")
# family folders a registry added (os.pathsep-separated), exported so that child processes (timing, Ray workers)
# know the same families as the process that loaded the registry
ENV = "ZOO_FAMILIES"


class FamilyRegistry:
    def __init__(self) -> None:
        self._by_task: dict[str, Family] = {}
        self._builtin_loaded = False

    def register(self, family: Family) -> Family:
        """Add ``family``; its task and formats must be new (the same plugin module loaded again replaces itself).

        Raises:
            ValueError: another family serves the same task or format.
        """
        self._ensure_builtin()
        self._add(family)
        return family

    def _add(self, family: Family) -> None:
        for other in list(self._by_task.values()):
            if type(other).__module__ == type(family).__module__:  # the same plugin loaded again from a copy
                del self._by_task[other.task]
                continue
            if other.task == family.task:
                raise ValueError(f"task '{family.task}' is served twice ({type(other).__module__} and "
                                 f"{type(family).__module__})")
            if clash := set(other.formats) & set(family.formats):
                raise ValueError(f"format '{sorted(clash)[0]}' belongs to two families ({type(other).__module__} "
                                 f"and {type(family).__module__})")
        self._by_task[family.task] = family

    def _ensure_builtin(self) -> None:
        if self._builtin_loaded:
            return
        self._builtin_loaded = True
        for name in BUILTIN:
            self._add(importlib.import_module(f"zoo.families.{name}.family").FAMILY)
        for folder in filter(None, os.environ.get(ENV, "").split(os.pathsep)):
            load_plugin(Path(folder), ENV)

    def get(self, task: object) -> Family:
        """The family serving ``task`` (a registry ``task:`` spelling).

        Raises:
            ZooError: no family serves it.
        """
        self._ensure_builtin()
        try:
            return self._by_task[str(task)]
        except KeyError:
            raise ZooError(f"task '{task}' has no family{did_you_mean(str(task), self._by_task)}: use one of "
                           f"{', '.join(self._by_task)}, or add a family folder (docs/architecture.md)") from None

    def owner_of(self, fmt: str) -> Family | None:
        """The family whose loaders read artifact format ``fmt``."""
        self._ensure_builtin()
        return next((f for f in self._by_task.values() if fmt in f.formats), None)

    def tasks(self) -> list[str]:
        self._ensure_builtin()
        return list(self._by_task)

    def __iter__(self):
        self._ensure_builtin()
        return iter(list(self._by_task.values()))


FAMILIES = FamilyRegistry()


def family_of(task: object) -> Family:
    """The family of a registry ``task:`` (see :meth:`FamilyRegistry.get`)."""
    return FAMILIES.get(task)


def load_plugin(folder: Path, field: str) -> Family:
    """Import the family folder ``folder`` (a package whose ``family.py`` defines ``FAMILY``), register it and its
    techniques, and return it. Loading the same folder again returns the family already registered.

    Raises:
        ZooError: the folder is not a family, or it collides with one already registered.
    """
    folder = folder.resolve()
    name = f"zoo_family_{folder.name}"
    family_py = folder / "family.py"
    if not family_py.is_file():
        raise ZooError(f"{field}: {folder} has no family.py: a family folder defines FAMILY in family.py "
                       "(see docs/architecture.md)")
    if name in sys.modules and Path(sys.modules[name].__file__ or "").resolve().parent == folder:
        return sys.modules[f"{name}.family"].FAMILY
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]  # the same family name from another folder (a copy) replaces the first
    init = folder / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init if init.is_file() else family_py,
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ZooError(f"{field}: {folder} cannot be imported as a Python package")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    try:
        if init.is_file():
            spec.loader.exec_module(package)
        module = importlib.import_module(f"{name}.family")
        family = module.FAMILY
    except AttributeError:
        sys.modules.pop(name, None)
        raise ZooError(f"{field}: {family_py} defines no FAMILY: set FAMILY = YourFamily()") from None
    except ImportError as e:
        sys.modules.pop(name, None)
        raise ZooError(f"{field}: {family_py} does not import: {e}") from None
    if not isinstance(family, Family):
        raise ZooError(f"{field}: FAMILY in {family_py} is not a zoo.families.base.Family")
    try:
        FAMILIES.register(family)
        from zoo.techniques import TECHNIQUES

        for technique in family.techniques():
            TECHNIQUES.register(technique, replace_module=True)
    except ValueError as e:
        raise ZooError(f"{field}: {e}") from None
    known = [f for f in os.environ.get(ENV, "").split(os.pathsep) if f]
    if str(folder) not in known:
        os.environ[ENV] = os.pathsep.join([*known, str(folder)])
    return family


__all__ = ["BUILTIN", "FAMILIES", "Family", "FamilyRegistry", "PerfModel", "Scores", "family_of", "load_plugin"]
