"""Recipes: ``recipes/<name>.yaml`` files naming a technique and its parameters, validated by that technique."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from zoo import yamlio
from zoo.errors import Problem, did_you_mean
from zoo.registry.pydantic_errors import problems_from
from zoo.techniques.base import Params, Technique

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    technique: Technique
    params: Params
    raw: dict[str, Any]  # the file's data, for hashing and provenance


def load_recipe(name: str, recipes_dir: Path, display_dir: str) -> tuple[Recipe | None, list[Problem]]:
    """Load and validate ``recipes_dir/<name>.yaml``; return the recipe or the problems found in it."""
    from zoo.techniques import TECHNIQUES

    path = recipes_dir / f"{name}.yaml"
    shown = f"{display_dir}/{name}.yaml"
    from zoo.errors import ZooError

    try:
        doc = yamlio.load(path, shown)
    except ZooError as e:
        return None, e.problems
    if not isinstance(doc.data, dict):
        return None, [doc.problem((), "a recipe is a mapping with 'technique:' and its parameters")]
    data = dict(doc.data)
    technique_name = data.pop("technique", None)
    if technique_name is None:
        return None, [doc.problem((), f"missing 'technique:' (one of: {', '.join(TECHNIQUES.names())})")]
    if not isinstance(technique_name, str) or technique_name not in TECHNIQUES:
        return None, [doc.problem(("technique",), f"unknown technique '{technique_name}'"
                                  f"{did_you_mean(str(technique_name), TECHNIQUES.names())}")]
    technique = TECHNIQUES.get(technique_name)
    data.pop("description", None)
    try:
        params = technique.params.model_validate(data)
    except ValidationError as e:
        return None, problems_from(e, doc, technique.params)
    return Recipe(name, path, technique, params, dict(doc.data)), []
