"""Per-task evaluation, performance inputs and examples: one handler per registry ``task:``, chosen explicitly.

A new task is one module here plus one line in ``TASKS``; every stage (data, evaluate, perf, cards, Spaces) asks
:func:`handler` instead of branching on the task itself. Handlers import torch and the runtimes only when called.
"""

from __future__ import annotations

from zoo.errors import ZooError
from zoo.families.object_detection.task import ObjectDetection
from zoo.registry.schema import Task
from zoo.tasks.base import PerfModel, Scores, TaskHandler
from zoo.tasks.image_classification import ImageClassification
from zoo.tasks.text_classification import TextClassification
from zoo.tasks.text_generation import TextGeneration

TASKS: dict[Task, TaskHandler] = {
    Task.text_classification: TextClassification(),
    Task.image_classification: ImageClassification(),
    Task.text_generation: TextGeneration(),
    Task.object_detection: ObjectDetection(),
}


def handler(task: Task | str) -> TaskHandler:
    """The handler of ``task`` (a :class:`Task` or its registry spelling).

    Raises:
        ZooError: no handler serves that task.
    """
    try:
        return TASKS[Task(task)]
    except (ValueError, KeyError):
        raise ZooError(f"task '{task}' has no handler in zoo/tasks: use one of "
                       f"{', '.join(t.value for t in TASKS)}") from None


__all__ = ["TASKS", "PerfModel", "Scores", "TaskHandler", "handler"]
