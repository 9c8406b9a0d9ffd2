"""Every technique, registered explicitly: the generic ones below (one module here plus one line each), then, on
first use, each family's own (``Family.techniques()`` in its folder)."""

from zoo.techniques import distill, half, int8, prune, qlora
from zoo.techniques.base import BuildContext, Params, Technique
from zoo.techniques.registry import TechniqueRegistry


def _register_families(registry: TechniqueRegistry) -> None:
    from zoo.families import FAMILIES

    for family in FAMILIES:
        for technique in family.techniques():
            registry.register(technique, replace_module=True)


TECHNIQUES = TechniqueRegistry(extend=_register_families)
TECHNIQUES.register(half.Half())
TECHNIQUES.register(int8.Int8())
TECHNIQUES.register(qlora.Qlora())
TECHNIQUES.register(distill.Distill())
TECHNIQUES.register(prune.Prune())

__all__ = ["TECHNIQUES", "BuildContext", "Params", "Technique", "TechniqueRegistry"]
