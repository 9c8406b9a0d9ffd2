"""Load a Whisper artifact (transformers fp32/fp16/NF4, or an ONNX Runtime encoder + decoder pair) behind one
``transcribe(audio)`` call, and the text normalisation WER is computed on.

Standalone (no zoo imports): the Space ships this file beside its app as ``whisper_runtime.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

ONNX_FILES = ("encoder.onnx", "decoder.onnx")
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MAX_NEW_TOKENS = 24
SAMPLE_RATE = 16_000


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, digits spelled out, whitespace collapsed (the WER's view of a transcript)."""
    text = re.sub(r"\d", lambda m: f" {DIGITS[int(m.group())]} ", text.lower())
    return " ".join(re.sub(r"[^\w\s']", " ", text).split())


def to_16k(rate: int, data: np.ndarray, max_seconds: float = 30.0, resample: Any = None) -> np.ndarray:
    """Mono float32 in [-1, 1] at 16 kHz from any integer or float PCM array, cut to ``max_seconds``."""
    if resample is None:
        from scipy.signal import resample_poly as resample
    x = np.asarray(data)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(data.dtype).max)
    x = x.astype(np.float32)[: int(rate * max_seconds)]
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        x = resample(x, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return x


class Transcriber:
    runtime: str
    dtype: str
    processor: Any

    def features(self, audio: list[np.ndarray]) -> np.ndarray:
        return self.processor.feature_extractor(audio, sampling_rate=16_000, return_tensors="np").input_features

    def generate(self, features: np.ndarray) -> list[list[int]]:
        raise NotImplementedError

    def transcribe(self, audio: list[np.ndarray], batch: int = 16) -> list[str]:
        out: list[str] = []
        for i in range(0, len(audio), batch):
            ids = self.generate(self.features(audio[i : i + batch]))
            out += [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out

    def params_count(self) -> int:
        raise NotImplementedError


class TorchWhisper(Transcriber):
    runtime = "torch"

    def __init__(self, folder: Path, dtype: str, device: str = "cpu", threads: int = 0) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if threads:
            torch.set_num_threads(threads)
        self.dtype, self.device = dtype, device
        self.torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype, torch.float32)
        if dtype == "nf4":
            self.torch_dtype = torch.float32
        self.model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=self.torch_dtype).eval()
        if dtype == "nf4":
            try:
                from zoo.nf4_guard import guard_cpu_kernel
            except ImportError:  # in a Space, the guard ships beside the app
                from nf4_guard import guard_cpu_kernel

            guard_cpu_kernel(self.model)
        else:
            self.model.to(device)
        self.processor = WhisperProcessor.from_pretrained(folder)

    def generate(self, features: np.ndarray) -> list[list[int]]:
        import torch

        x = torch.from_numpy(features).to(self.model.device, self.torch_dtype)
        with torch.inference_mode():
            return self.model.generate(x, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False).tolist()

    def params_count(self) -> int:
        return sum(p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1) for p in self.model.parameters())


class OnnxWhisper(Transcriber):
    """Greedy decoding over an encoder graph and a decoder graph (no KV cache: clips here are a few tokens long)."""

    runtime = "onnxruntime"

    def __init__(self, folder: Path, dtype: str = "int8", threads: int = 0) -> None:
        import onnxruntime as ort
        from transformers import WhisperProcessor

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.encoder = ort.InferenceSession(str(folder / ONNX_FILES[0]), opts, providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(str(folder / ONNX_FILES[1]), opts, providers=["CPUExecutionProvider"])
        self.processor = WhisperProcessor.from_pretrained(folder)
        gen = json.loads((folder / "generation_config.json").read_text())
        self.start = [gen["decoder_start_token_id"]]
        if gen.get("no_timestamps_token_id") is not None and not gen.get("is_multilingual"):
            self.start.append(gen["no_timestamps_token_id"])
        self.eos = gen["eos_token_id"]
        self.suppress = np.array(sorted(set(gen.get("suppress_tokens") or [])), dtype=np.int64)
        self.begin_suppress = np.array(gen.get("begin_suppress_tokens") or [], dtype=np.int64)
        self.dtype, self.folder = dtype, folder

    def generate(self, features: np.ndarray) -> list[list[int]]:
        hidden = self.encoder.run(None, {"input_features": features.astype(np.float32)})[0]
        ids = np.tile(np.array(self.start, dtype=np.int64), (len(features), 1))
        done = np.zeros(len(features), dtype=bool)
        for step in range(MAX_NEW_TOKENS):
            logits = self.decoder.run(None, {"input_ids": ids, "encoder_hidden_states": hidden})[0][:, -1, :]
            logits[:, self.suppress] = -np.inf
            if step == 0:
                logits[:, self.begin_suppress] = -np.inf
            nxt = np.where(done, self.eos, logits.argmax(axis=1))
            ids = np.concatenate([ids, nxt[:, None]], axis=1)
            done |= nxt == self.eos
            if done.all():
                break
        return ids.tolist()

    def params_count(self) -> int:
        import onnx
        from onnx import numpy_helper

        total = 0
        for f in ONNX_FILES:
            graph = onnx.load(str(self.folder / f)).graph
            total += sum(int(numpy_helper.to_array(t).size) for t in graph.initializer)
        return total


def open_folder(folder: Path, device: str = "cpu", threads: int = 0) -> Transcriber:
    """The Whisper in a transformers folder or an ONNX encoder/decoder folder; the dtype from its config."""
    if all((folder / f).is_file() for f in ONNX_FILES):
        return OnnxWhisper(folder, "int8", threads)
    config = json.loads((folder / "config.json").read_text())
    q = config.get("quantization_config") or {}
    dtype = "nf4" if q.get("load_in_4bit") else {"float16": "fp16", "bfloat16": "bf16"}.get(
        str(config.get("dtype") or config.get("torch_dtype")), "fp32")
    return TorchWhisper(folder, dtype, device if dtype != "nf4" else "cpu", threads)
