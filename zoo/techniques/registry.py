"""The explicit registry of techniques: a name collision is an error; an unknown name says 'did you mean'."""

from __future__ import annotations

from zoo.errors import did_you_mean
from zoo.techniques.base import Technique


class TechniqueRegistry:
    def __init__(self) -> None:
        self._items: dict[str, Technique] = {}

    def register(self, technique: Technique) -> Technique:
        if technique.name in self._items:
            raise ValueError(f"technique '{technique.name}' is registered twice "
                             f"({type(self._items[technique.name]).__module__} and {type(technique).__module__})")
        self._items[technique.name] = technique
        return technique

    def get(self, name: str) -> Technique:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown technique '{name}'{did_you_mean(name, self._items)}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
