"""The explicit registry of techniques: a name collision is an error; an unknown name says 'did you mean'."""

from __future__ import annotations

from collections.abc import Callable

from zoo.errors import did_you_mean
from zoo.techniques.base import Technique


class TechniqueRegistry:
    def __init__(self, extend: Callable[[TechniqueRegistry], None] | None = None) -> None:
        """``extend`` registers more techniques on first use (the families', which import this package)."""
        self._items: dict[str, Technique] = {}
        self._extend = extend

    def _ensure(self) -> None:
        if self._extend is not None:
            extend, self._extend = self._extend, None
            extend(self)

    def register(self, technique: Technique, replace_module: bool = False) -> Technique:
        """Add ``technique``; with ``replace_module``, one of the same module (a plugin loaded again) replaces it."""
        old = self._items.get(technique.name)
        if replace_module and old is not None and type(old).__module__ == type(technique).__module__:
            self._items[technique.name] = technique
            return technique
        if technique.name in self._items:
            raise ValueError(f"technique '{technique.name}' is registered twice "
                             f"({type(self._items[technique.name]).__module__} and {type(technique).__module__})")
        self._items[technique.name] = technique
        return technique

    def get(self, name: str) -> Technique:
        self._ensure()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown technique '{name}'{did_you_mean(name, self._items)}") from None

    def names(self) -> list[str]:
        self._ensure()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._items
