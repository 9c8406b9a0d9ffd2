"""The vision family: EfficientNet-Lite image classifiers, their data, BN folding, CLE, QAT and ONNX export.

Heavy modules (torch, onnxruntime) load only when a function needs them; ``load_image_classifier`` is the one
entry point evaluation, cards and Spaces need.
"""

from __future__ import annotations

from typing import Any


def load_image_classifier(artifact_dir: Any, prefer: str = "onnx", threads: int | None = None) -> Any:
    """See :func:`zoo.families.image_classification.classifier.load_image_classifier`."""
    from zoo.families.image_classification.classifier import load_image_classifier as load

    return load(artifact_dir, prefer, threads)  # type: ignore[arg-type]


__all__ = ["load_image_classifier"]
