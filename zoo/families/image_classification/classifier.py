"""Load any vision artifact (torch-image or onnx-image) behind one API: ``logits(uint8 NHWC images)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from zoo.families.image_classification.model import ONNX, WEIGHTS, preprocess, read_config


class ImageClassifier:
    """A loaded image classifier; ``runtime`` is "onnxruntime" or "torch"."""

    def __init__(self, artifact_dir: Path, config: dict[str, Any], runtime: str, forward: Any):
        self.artifact_dir = artifact_dir
        self.config = config
        self.runtime = runtime
        self.label_names: list[str] = config["label_names"]
        self.image_size: int = config["image_size"]
        self._forward = forward

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N,H,W,C] → the float NCHW the model takes (resized and normalised per config.json)."""
        return preprocess(images, self.image_size, self.config["mean"], self.config["std"]).numpy()

    def logits(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Float32 logits [N, classes] for uint8 images [N,H,W,C] (C = 1 or 3), any size."""
        out = [self._forward(self.preprocess(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(self.label_names)), np.float32)

    def predict(self, images: np.ndarray) -> list[str]:
        return [self.label_names[i] for i in self.logits(images).argmax(-1)]


def load_image_classifier(artifact_dir: Path | str, prefer: Literal["onnx", "torch"] = "onnx",
                          threads: int | None = None) -> ImageClassifier:
    """The classifier in ``artifact_dir``: ``model.onnx`` with ONNX Runtime when present (or when ``prefer`` is
    "onnx" and both are), else the safetensors weights with torch.

    Raises:
        ZooError: the folder is not a vision artifact, or holds no model file.
    """
    from zoo.errors import ZooError

    artifact_dir = Path(artifact_dir)
    config = read_config(artifact_dir)
    has_onnx, has_torch = (artifact_dir / ONNX).is_file(), (artifact_dir / WEIGHTS).is_file()
    if has_onnx and (prefer == "onnx" or not has_torch):
        from zoo.families.image_classification.export import run, session

        sess = session(artifact_dir / ONNX, threads)
        return ImageClassifier(artifact_dir, config, "onnxruntime", lambda x: run(sess, x))
    if has_torch:
        import torch

        from zoo.families.image_classification.model import load_torch

        model, _ = load_torch(artifact_dir)
        if threads:
            torch.set_num_threads(threads)

        def forward(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).float().numpy()

        return ImageClassifier(artifact_dir, config, "torch", forward)
    raise ZooError(f"'{artifact_dir}' has neither {ONNX} nor {WEIGHTS}: rebuild the variant")
