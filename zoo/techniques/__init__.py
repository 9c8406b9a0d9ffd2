"""Every technique, registered explicitly: a new technique is one module here plus one line below."""

from zoo.techniques import distill, finetune, half, int8, qlora
from zoo.techniques.base import BuildContext, Params, Technique
from zoo.techniques.registry import TechniqueRegistry

TECHNIQUES = TechniqueRegistry()
TECHNIQUES.register(finetune.Finetune())
TECHNIQUES.register(half.Half())
TECHNIQUES.register(int8.Int8())
TECHNIQUES.register(qlora.Qlora())
TECHNIQUES.register(distill.Distill())

__all__ = ["TECHNIQUES", "BuildContext", "Params", "Technique", "TechniqueRegistry"]
