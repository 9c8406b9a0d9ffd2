"""Object detection (COCO boxes): coco128 data, the ``onnx-detector`` artifact, COCO mAP, and its techniques.

Everything the family knows lives in this folder; today's stages reach it through two hooks, the task handler
(:mod:`.task`, registered in ``zoo/tasks``) and the techniques (:mod:`.techniques`, registered in ``zoo/techniques``).
"""

# The registry imports the technique registry, which imports this family's techniques: load the registry first so
# that importing a module of this folder directly (tests, the report) does not meet a half-initialised registry.
import zoo.registry  # noqa: E402, F401
