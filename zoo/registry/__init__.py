"""Load and validate ``registry.yaml`` and its recipes into typed objects, or say exactly what is wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from zoo import yamlio
from zoo.errors import Problem, UsageError, ZooError, did_you_mean
from zoo.registry.pydantic_errors import problems_from
from zoo.registry.recipes import Recipe
from zoo.registry.schema import Model, Registry, Variant

SCHEMA_FILE = "registry.schema.json"


@dataclass
class Loaded:
    """A registry that passed every rule, with the recipes its variants use."""

    path: Path
    registry: Registry
    recipes: dict[str, Recipe]
    doc: yamlio.Document
    warnings: list[Problem] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

    def locate(self, message: str) -> str:
        """Prefix a message that starts with a registry field path (``models.x.dataset.text: ...``) with its
        ``registry.yaml:LINE``, so errors found after validation point into the file too."""
        head, sep, _ = message.partition(": ")
        if not sep or not head.startswith(("models.", "targets.")) or " " in head:
            return message
        loc = tuple(int(p) if p.isdigit() else p for p in head.split("."))
        return f"{self.doc.path}:{self.doc.line_of(loc)}: {message}"

    def model(self, mid: str) -> Model:
        return self.registry.models[mid]

    def recipe_of(self, variant: Variant) -> Recipe:
        return self.recipes[variant.recipe]

    def select(self, model: str | None, variant: str | None, include_nondefault: bool = False
               ) -> list[tuple[str, str]]:
        """The (model, variant) pairs a selector names; all default models when it names none.

        Raises:
            UsageError: an unknown model or variant, with 'did you mean'.
        """
        models = self.registry.models
        if model is not None and model not in models:
            raise UsageError(f"unknown model '{model}'{did_you_mean(model, models)}")
        if model is not None and variant is not None and variant not in models[model].variants:
            raise UsageError(f"unknown variant '{model}:{variant}'{did_you_mean(variant, models[model].variants)}")
        out = []
        for mid, m in models.items():
            if model is None and not (m.default or include_nondefault):
                continue
            if model is not None and mid != model:
                continue
            for vid in m.variants:
                if variant is None or vid == variant:
                    out.append((mid, vid))
        return out


def load(path: str | Path = "registry.yaml", text: str | None = None, recipes_text: dict[str, str] | None = None
         ) -> Loaded:
    """Parse and validate a registry file and the recipes it names.

    Args:
        path: the registry file; recipes are read from ``recipes/`` beside it.
        text: the registry's content, when it does not come from ``path`` (e.g. from a git revision).

    Raises:
        ZooError: every problem found, one line each (warnings are returned, not raised).
    """
    path = Path(path)
    display = str(path) if not path.is_absolute() else _relative(path)
    doc = yamlio.load(path, display, text)
    if not isinstance(doc.data, dict):
        raise ZooError(problems=[doc.problem((), "the registry must be a mapping with 'org', 'targets' and 'models'")])
    data = {k: v for k, v in doc.data.items() if k != "$schema"}
    _load_families(data.get("families"), path.parent, doc)
    try:
        reg = Registry.model_validate(data)
    except ValidationError as e:
        raise ZooError(problems=problems_from(e, doc, Registry)) from None
    from zoo.registry import rules

    recipes_dir = path.parent / "recipes"
    recipes_display = str(Path(display).parent / "recipes") if Path(display).parent != Path(".") else "recipes"
    recipes, problems = rules.check(reg, doc, recipes_dir, recipes_display)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise ZooError(problems=errors)
    return Loaded(path.resolve(), reg, recipes, doc, [p for p in problems if p.warning])


def _load_families(folders: object, root: Path, doc: yamlio.Document) -> None:
    """Import the family folders the registry names (``families:``), so their tasks validate."""
    from zoo.families import load_plugin

    if not isinstance(folders, list):
        return  # the schema reports the wrong type
    problems = []
    for i, folder in enumerate(folders):
        if not isinstance(folder, str):
            continue
        try:
            load_plugin(root / folder, f"families[{i}]")
        except ZooError as e:
            problems.append(doc.problem(("families", i), str(e).split(": ", 1)[-1]))
    if problems:
        raise ZooError(problems=problems)


def json_schema() -> str:
    """The JSON Schema of registry.yaml, for editors (yaml-language-server) and CI."""
    from zoo.families import FAMILIES
    from zoo.metrics import METRICS

    schema = Registry.model_json_schema(by_alias=True)
    # tasks and metrics are open (a project's family folder adds its own); editors still suggest the built-in ones
    builtin = [f.task for f in FAMILIES if type(f).__module__.startswith("zoo.families.")]
    schema["$defs"]["Model"]["properties"]["task"]["examples"] = builtin
    schema["$defs"]["Evaluation"]["properties"]["metrics"]["items"]["examples"] = list(METRICS)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "modelzoo registry.yaml"
    schema["$comment"] = "generated by `zoo schema` — do not edit"
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


__all__ = ["Loaded", "load", "json_schema", "SCHEMA_FILE", "UsageError"]
