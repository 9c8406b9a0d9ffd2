"""Image classification: uint8 image sets, top-1 (and accuracy / macro-F1, k-fold spread), timed on image batches
at the artifact's input size."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.families.base import Family, PerfModel, Scores, alternate, params_from_provenance, seeded_subset
from zoo.families.text_classification.family import check_labels
from zoo.registry.schema import Model

EVAL_BATCH = 64  # images per forward pass when computing metrics
EXAMPLE_PNG = "example.png"  # a test-split image staged into each repo for its snippets
VISION_MODULE = "efficientnet_lite.py"  # standalone network code staged beside a PyTorch (safetensors) model
SPACE_EXAMPLES = 4  # example images in the Space
MAX_IMAGE_SIDE = 4096  # larger uploads are refused (the models see 16–224 px; this bounds decoding and resizing)
MAX_UPLOAD_MB = 10  # gradio refuses larger files before the app sees them
TOP_K = 3  # labels shown per variant in the Space


class ImageClassification(Family):
    task = "image-classification"
    formats = ("torch-image", "onnx-image")
    metrics = ("top1", "accuracy", "f1")
    example_unit = "images"
    space_intro = ("Upload an image (or pick one of the test-split examples) and every variant of `{model_id}` "
                   "classifies it side by side, each with its top labels and its latency on this Space's hardware.")

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        from zoo.families.image_classification.data import load_image_splits

        return load_image_splits(model.dataset, root, field)

    def test_rows(self, model: Model, root: Path, field: str) -> Any:
        from zoo.data import load_splits
        from zoo.families.image_classification.data import ImageSplit

        test = load_splits(model, root, field).test
        keep = seeded_subset(len(test), model.evaluation.samples, model.evaluation.seed)
        if keep is None:
            return test
        return ImageSplit(test.images[keep], test.labels[keep], [test.indices[i] for i in keep])

    def evaluate(self, artifact_dir: Path, model: Model, root: Path, field: str, device: str, key: str) -> Scores:
        from zoo import metrics
        from zoo.data import load_splits

        ev = model.evaluation
        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        clf = _load(artifact_dir)
        check_labels(clf.label_names, splits.label_names, key)
        preds = clf.logits(rows.images, EVAL_BATCH).argmax(axis=1).tolist()
        labels = rows.labels.tolist()
        names = list(ev.metrics)
        n_classes = len(splits.label_names)
        scores = metrics.classification(names, labels, preds, n_classes)
        folds = metrics.kfold(names, labels, preds, ev.kfold, ev.seed, n_classes) if ev.kfold else None
        predictions = {"labels": [int(v) for v in labels], "preds": [int(v) for v in preds],
                       "n_classes": n_classes}
        test = {**splits.describe("test"), "samples": len(rows), "indices_sha256": rows.indices_hash()}
        return Scores(scores, len(rows), test, folds, {"image_size": clf.image_size, "runtime": clf.runtime},
                      predictions)

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        import numpy as np

        from zoo.formats import onnx_params, read_provenance

        clf = _load(artifact_dir)
        size = clf.image_size
        rng = np.random.default_rng(0)

        def runner(n: int):
            images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            return lambda: clf.logits(images, batch_size=n)

        onnx = artifact_dir / "model.onnx"
        params = params_from_provenance(artifact_dir) or (
            onnx_params(onnx) if onnx.is_file() else _safetensors_params(artifact_dir / "model.safetensors"))
        dtype = read_provenance(artifact_dir).get("dtype") or clf.config.get("dtype", "fp32")
        return PerfModel(clf.runtime, dtype, params, runner,
                         f"logits of uint8 {size}x{size}x3 images already at the model's input size "
                         "(normalisation included, no resize)", {"image_size": size})

    def examples(self, model: Model, root: Path, field: str, n: int, max_chars: int = 0) -> list[Any]:
        """Up to ``n`` test images (uint8 HxWx3 numpy arrays), alternating over the classes."""
        return [image for image, _label in self.labelled_examples(model, root, field, n)]

    def labelled_examples(self, model: Model, root: Path, field: str, n: int) -> list[tuple[Any, str]]:
        """Up to ``n`` test images as ``(uint8 HxWx3 array, label name)``, alternating over the classes.

        Raises:
            ZooError: the test split is empty.
        """
        from zoo.data import load_splits

        splits = load_splits(model, root, field)
        by_label: dict[str, list[tuple[Any, str]]] = {}
        for image, label in zip(splits.test.images, splits.test.labels.tolist(), strict=True):
            name = splits.label_names[int(label)]
            by_label.setdefault(name, []).append((image, name))
        out = alternate(by_label, n)
        if not out:
            raise ZooError(f"{field}.split: the test split is empty, so there is no example image")
        return out

    def perf_input(self, seq_len: int, results: list[dict[str, Any]]) -> str:
        sizes = sorted({(r.get("perf") or {}).get("image_size") for r in results} - {None})
        return f"{'/'.join(map(str, sizes))} px images" if sizes else "images"

    def recognises(self, config: dict[str, Any]) -> bool:
        return "architecture" in config  # the efficientnet-lite config.json this family writes

    # ------------------------------------------------------------ card

    def describe_example(self, loaded: Any, model_id: str) -> str:
        image_label = self.labelled_examples(loaded.model(model_id), loaded.root, f"models.{model_id}.dataset", 1)
        return f"a test-split image labelled {image_label[0][1]!r}"

    def usage_names(self, node: Any, fmt: str, art: Path | None, root: str | None) -> list[str]:
        if fmt == "onnx-image" or art is None or not (art / "model.safetensors").is_file():
            return ["onnx-image"]
        return ["torch-image", "onnx-image"] if (art / "model.onnx").is_file() else ["torch-image"]

    def snippet_values(self) -> dict[str, Any]:
        return {"example_png": EXAMPLE_PNG, "vision_module": VISION_MODULE}

    def format_tags(self, fmt: str) -> list[str]:
        return ["efficientnet-lite", "safetensors"] if fmt == "torch-image" else []

    def stage_card_files(self, loaded: Any, node: Any, art: Path, out: Path) -> None:
        """One test image for the snippets and, for a PyTorch (safetensors) folder, the module that rebuilds the
        network."""
        model = loaded.model(node.model_id)
        image, _label = self.labelled_examples(model, loaded.root, f"models.{node.model_id}.dataset", 1)[0]
        save_png(image, out / EXAMPLE_PNG)
        if (art / "model.safetensors").is_file():
            shutil.copyfile(self.folder / "code" / VISION_MODULE, out / VISION_MODULE)

    # ------------------------------------------------------------ Space

    space_packages = ("gradio", "huggingface_hub", "numpy", "pillow", "onnxruntime")

    def space_spec(self, node: Any, art: Path, prov: dict[str, Any]) -> dict[str, Any]:
        # the ONNX graph where there is one (int8, QAT, the fp16 copy of w16a16); PyTorch for safetensors-only ones
        runtime = "onnxruntime" if (art / "model.onnx").is_file() else "torch"
        return {"format": prov.get("format"), "runtime": runtime, "label_names": prov.get("label_names"),
                "image_size": prov.get("image_size")}

    def space_limits(self) -> dict[str, Any]:
        return {"max_side": MAX_IMAGE_SIDE, "max_upload_mb": MAX_UPLOAD_MB, "top_k": TOP_K}

    def space_files(self, loaded: Any, model_id: str, out: Path, config: dict[str, Any]) -> None:
        """Test-split images as ``examples/<n>-<label>.png`` and the network's code."""
        (out / "examples").mkdir()
        found = []
        model = loaded.model(model_id)
        for i, (image, label) in enumerate(self.labelled_examples(model, loaded.root, f"models.{model_id}.dataset",
                                                                  SPACE_EXAMPLES)):
            rel = f"examples/{i}-{''.join(c if c.isalnum() else '_' for c in label)}.png"
            save_png(image, out / rel)
            found.append({"file": rel, "label": label})
        config["examples"] = found
        shutil.copyfile(self.folder / "code" / VISION_MODULE, out / VISION_MODULE)

    def space_requirements(self, specs: list[dict[str, Any]]) -> list[str]:
        torch = ["torch", "safetensors"] if any(s["runtime"] == "torch" for s in specs) else []
        return [*self.space_packages, *torch]

    def demo_settings(self, folder: Path) -> dict[str, Any]:
        return {"max_body_bytes": (MAX_UPLOAD_MB + 1) * 1_000_000, "max_file_size": f"{MAX_UPLOAD_MB}mb",
                "allowed_paths": [str(folder / "examples")]}

    # ------------------------------------------------------------ zoo pull

    def load_lines(self, folder: Path, fmt: str | None) -> list[str]:
        if fmt == "torch-image":
            module = folder / VISION_MODULE
            return ["import importlib.util",
                    f'spec = importlib.util.spec_from_file_location("efficientnet_lite", {json.dumps(str(module))})',
                    "lite = importlib.util.module_from_spec(spec); spec.loader.exec_module(lite)",
                    f"model, config = lite.load({json.dumps(str(folder))})"]
        return ["import onnxruntime as ort",
                f'session = ort.InferenceSession({json.dumps(str(folder / "model.onnx"))}, '
                'providers=["CPUExecutionProvider"])  # preprocessing: see the README']

    def techniques(self) -> list[Any]:
        from zoo.families.image_classification.techniques import VisionFinetune, VisionHalf, VisionPtq, VisionQat

        return [VisionFinetune(), VisionHalf(), VisionPtq(), VisionQat()]


def save_png(image: Any, path: Path) -> None:
    """Write a uint8 [H, W, 3] image as PNG (grayscale when its three channels are equal)."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(image, dtype=np.uint8)
    gray = arr.ndim == 3 and arr.shape[-1] == 3 and (arr == arr[..., :1]).all()
    Image.fromarray(arr[..., 0] if gray else arr).save(path, format="PNG")


def _load(artifact_dir: Path) -> Any:
    from zoo.families.image_classification import load_image_classifier
    from zoo.formats import threads

    return load_image_classifier(artifact_dir, threads=threads())


def _safetensors_params(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        names = f.keys()  # a safetensors handle is not iterable
        return sum(math.prod(f.get_slice(k).get_shape()) for k in names)


FAMILY = ImageClassification()
