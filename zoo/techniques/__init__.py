"""Every technique, registered explicitly: a new technique is one module here plus one line below."""

from zoo.families.object_detection import techniques as detection
from zoo.techniques import distill, finetune, half, int8, lm, lm_qlora, prune, qlora, vision
from zoo.techniques.base import BuildContext, Params, Technique
from zoo.techniques.registry import TechniqueRegistry

TECHNIQUES = TechniqueRegistry()
TECHNIQUES.register(finetune.Finetune())
TECHNIQUES.register(half.Half())
TECHNIQUES.register(int8.Int8())
TECHNIQUES.register(qlora.Qlora())
TECHNIQUES.register(distill.Distill())
TECHNIQUES.register(lm.LmFinetune())
TECHNIQUES.register(lm.LmHalf())
TECHNIQUES.register(lm.LmGenai())
TECHNIQUES.register(lm_qlora.LmQlora())
TECHNIQUES.register(lm.LmDistill())
TECHNIQUES.register(vision.VisionFinetune())
TECHNIQUES.register(vision.VisionHalf())
TECHNIQUES.register(vision.VisionPtq())
TECHNIQUES.register(vision.VisionQat())
TECHNIQUES.register(prune.Prune())
TECHNIQUES.register(detection.DetectionConvert())
TECHNIQUES.register(detection.DetectionHalf())
TECHNIQUES.register(detection.DetectionPtq())

__all__ = ["TECHNIQUES", "BuildContext", "Params", "Technique", "TechniqueRegistry"]
