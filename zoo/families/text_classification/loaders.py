"""The text classifier's loader: ``load_classifier(dir)`` reads the artifact's ``provenance.json`` ("format",
"dtype") and returns a :class:`Classifier` whose ``logits(texts, max_length)`` gives a numpy array, so callers never
branch on runtimes. A folder without provenance (a pulled repo's ``onnx/`` subfolder, a torch.onnx export) is
recognised by its files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.formats import TORCH_DTYPES, detect_format, onnx_params, read_provenance, set_threads, threads
from zoo.nf4_guard import guard_cpu_kernel


class Classifier:
    """A loaded sequence classifier. Subclasses set ``runtime`` and implement :meth:`_forward`."""

    runtime: str = ""

    def __init__(self, artifact_dir: Path, tokenizer: Any, label_names: list[str] | None, dtype: str, device: str):
        self.artifact_dir = artifact_dir
        self.tokenizer = tokenizer
        self.label_names = label_names
        self.dtype = dtype
        self.device = device

    def encode(self, texts: Sequence[str], max_length: int, pad_to_max: bool = False) -> dict[str, Any]:
        """Tokenize to torch tensors: truncated to ``max_length``, padded to the longest row or to ``max_length``."""
        return dict(self.tokenizer(list(texts), truncation=True, max_length=max_length,
                                   padding="max_length" if pad_to_max else True, return_tensors="pt"))

    def logits(self, texts: Sequence[str], max_length: int, pad_to_max: bool = False) -> np.ndarray:
        """Float32 logits of shape (len(texts), classes) for one batch of texts."""
        return self.forward(self.encode(texts, max_length, pad_to_max))

    def forward(self, batch: dict[str, Any]) -> np.ndarray:
        """Logits for an already encoded batch (what latency measurements time)."""
        return self._forward(batch)

    def predict(self, texts: Sequence[str], max_length: int, batch_size: int = 32) -> np.ndarray:
        """Logits for any number of texts, batched; rows are sorted by length so batches carry little padding."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[np.ndarray] = []
        for start in range(0, len(order), batch_size):
            out.append(self.logits([texts[i] for i in order[start:start + batch_size]], max_length))
        if not out:
            return np.zeros((0, len(self.label_names or [])), dtype=np.float32)
        logits = np.concatenate(out)
        result = np.empty_like(logits)
        result[order] = logits
        return result

    def params_count(self) -> int:
        raise NotImplementedError

    def _forward(self, batch: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError


class TorchClassifier(Classifier):
    runtime = "torch"

    def __init__(self, artifact_dir: Path, tokenizer: Any, model: Any, dtype: str, device: str):
        labels = _labels(model.config)
        super().__init__(artifact_dir, tokenizer, labels, dtype, device)
        self.model = model

    def _forward(self, batch: dict[str, Any]) -> np.ndarray:
        import torch

        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            logits = self.model(**batch).logits
        if self.device != "cpu":
            torch.cuda.synchronize()
        return logits.float().cpu().numpy()

    def params_count(self) -> int:
        from_prov = read_provenance(self.artifact_dir).get("params_count")
        if from_prov:
            return int(from_prov)
        # a bitsandbytes 4-bit weight packs two values per stored element
        return sum(p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1) for p in self.model.parameters())


class OnnxClassifier(Classifier):
    runtime = "onnxruntime"

    def __init__(self, artifact_dir: Path, tokenizer: Any, session: Any, config: Any, dtype: str, device: str):
        super().__init__(artifact_dir, tokenizer, _labels(config), dtype, device)
        self.session = session
        self.input_names = {i.name for i in session.get_inputs()}

    def _forward(self, batch: dict[str, Any]) -> np.ndarray:
        feed = {k: np.asarray(v, dtype=np.int64) for k, v in batch.items() if k in self.input_names}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)

    def params_count(self) -> int:
        from_prov = read_provenance(self.artifact_dir).get("params_count")
        if from_prov:
            return int(from_prov)
        return onnx_params(self.artifact_dir / "model.onnx")


def load_classifier(artifact_dir: Path, device: str = "cpu") -> Classifier:
    """Load a classifier artifact for inference.

    Args:
        artifact_dir: a built artifact (or a folder laid out like one: config.json + tokenizer + weights).
        device: "cpu" or "cuda".

    Returns:
        A :class:`Classifier`; ``runtime`` is "torch" or "onnxruntime", ``dtype`` the stored weight type.

    Raises:
        ZooError: unknown format, or the folder does not load (the message names the folder and the cause).
    """
    artifact_dir = Path(artifact_dir)
    if not (artifact_dir / "config.json").is_file():
        raise ZooError(f"{artifact_dir}: no config.json: this is not a built artifact (run `zoo build` first)")
    prov = read_provenance(artifact_dir)
    fmt = detect_format(artifact_dir)
    dtype = prov.get("dtype") or _config_dtype(artifact_dir)
    set_threads()
    try:
        if fmt == "transformers":
            return _load_torch(artifact_dir, dtype, device)
        if fmt == "onnx":
            return _load_onnx(artifact_dir, dtype, device)
    except (OSError, ValueError, RuntimeError, ImportError) as e:
        raise ZooError(f"{artifact_dir}: cannot load the {fmt} artifact: {str(e).splitlines()[0]}") from e
    raise ZooError(f"{artifact_dir / 'provenance.json'}: format '{fmt}' is unknown: expected transformers or onnx")


def _load_torch(artifact_dir: Path, dtype: str, device: str) -> TorchClassifier:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = json.loads((artifact_dir / "config.json").read_text())
    kwargs: dict[str, Any] = {}
    if config.get("quantization_config"):
        # bitsandbytes places the weights itself; the saved config says how they were quantized
        kwargs["device_map"] = {"": device if device == "cpu" else 0}
    elif dtype in TORCH_DTYPES:
        kwargs["dtype"] = getattr(torch, TORCH_DTYPES[dtype])
    model = AutoModelForSequenceClassification.from_pretrained(artifact_dir, **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    else:
        guard_cpu_kernel(model)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(artifact_dir)
    return TorchClassifier(artifact_dir, tokenizer, model, dtype, device)


def _load_onnx(artifact_dir: Path, dtype: str, device: str) -> OnnxClassifier:
    import onnxruntime as ort
    from transformers import AutoConfig, AutoTokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads()
    options.log_severity_level = 3
    provider = "CUDAExecutionProvider" if device != "cpu" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise ZooError(f"{artifact_dir}: onnxruntime here has no {provider}: install onnxruntime-gpu or use the CPU")
    session = ort.InferenceSession(str(artifact_dir / "model.onnx"), options, providers=[provider])
    tokenizer = AutoTokenizer.from_pretrained(artifact_dir)
    return OnnxClassifier(artifact_dir, tokenizer, session, AutoConfig.from_pretrained(artifact_dir), dtype, device)


def _config_dtype(artifact_dir: Path) -> str:
    config = json.loads((artifact_dir / "config.json").read_text())
    if config.get("quantization_config", {}).get("load_in_4bit"):
        return "nf4"
    raw = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return {"float16": "fp16", "bfloat16": "bf16"}.get(raw, "fp32")


def _labels(config: Any) -> list[str] | None:
    id2label = getattr(config, "id2label", None) or {}
    return [id2label[i] for i in sorted(id2label)] if id2label else None
