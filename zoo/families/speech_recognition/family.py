"""Automatic speech recognition: speaker-split clips, WER (with a bootstrap interval) and the real-time factor, timed
as one greedy transcription of a batch of one-second clips."""

from __future__ import annotations

import gc
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.families.base import Family, PerfModel, Scores, seeded_subset
from zoo.registry.schema import Model

EVAL_BATCH = 16  # clips per generate() call when computing WER
MAX_SECONDS = 10.0  # longest clip the Space accepts
MAX_UPLOAD_MB = 2
SPACE_EXAMPLES = 4  # example clips in the Space
BUILDER = "fsdd"  # the dataset builder this family reads (<digit>_<speaker>_<n>.wav clips)


class SpeechRecognition(Family):
    task = "automatic-speech-recognition"
    formats = ("transformers-whisper", "onnx-whisper")
    metrics = ("wer",)
    gpu = True
    example_unit = "clips"
    space_intro = ("Record or upload a short clip (or pick a test-split example) and every variant of `{model_id}` "
                   "transcribes it side by side, each with its latency on this Space's hardware.")
    example_text = "clip.wav"
    auto_class = "AutoModelForSpeechSeq2Seq"
    space_packages = ("gradio", "huggingface_hub", "numpy", "scipy", "torch", "transformers", "accelerate")

    # ------------------------------------------------------------ data, evaluation, timing

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        from zoo.families.speech_recognition.data import load_speech_splits

        b = model.dataset.builder
        if b is None or b.name != BUILDER:
            raise ZooError(f"{field}.builder: {self.task} reads clips with a builder: set "
                           f"builder: {{name: {BUILDER}, options: {{test_speakers: [...]}}}}")
        return load_speech_splits(model.dataset, root, field)

    def test_rows(self, model: Model, root: Path, field: str) -> Any:
        from zoo.data import load_splits

        test = load_splits(model, root, field).test
        keep = seeded_subset(len(test), model.evaluation.samples, model.evaluation.seed)
        return test if keep is None else test.subset(keep)

    def evaluate(self, artifact_dir: Path, model: Model, root: Path, field: str, device: str, key: str) -> Scores:
        from zoo.data import load_splits
        from zoo.families.speech_recognition.runtime import normalize
        from zoo.families.speech_recognition.wer import BOOTSTRAP, load_transcriber, wer_interval, word_error_rate

        ev = model.evaluation
        splits = load_splits(model, root, field)
        rows = self.test_rows(model, root, field)
        asr = load_transcriber(artifact_dir, device)
        asr.transcribe(rows.audio[:2], 2)  # warm-up, not timed
        start = time.perf_counter()
        hyps = asr.transcribe(rows.audio, EVAL_BATCH)
        seconds = time.perf_counter() - start
        del asr
        gc.collect()
        refs = [normalize(t) for t in rows.texts]
        norm = [normalize(h) for h in hyps]
        wer = word_error_rate(refs, norm)
        lo, hi = wer_interval(refs, norm, ev.seed)
        test = {**splits.describe("test"), "samples": len(rows), "indices_sha256": rows.indices_hash()}
        interval = {"value": wer, "low": lo, "high": hi, "level": 0.95, "resamples": BOOTSTRAP, "rows": len(rows),
                    "method": "percentile bootstrap over test clips (corpus WER of each resample)"}
        details = {"wer_ci95": [lo, hi], "rtf": seconds / max(rows.seconds(), 1e-9), "audio_seconds": rows.seconds(),
                   "examples": [{"reference": r, "hypothesis": h} for r, h in zip(rows.texts[:5], hyps[:5],
                                                                                  strict=True)]}
        return Scores({"wer": wer}, len(rows), test, None, details, intervals={"wer": interval})

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        from zoo.families.speech_recognition.wer import load_transcriber

        asr = load_transcriber(artifact_dir, device)
        t = np.arange(16_000, dtype=np.float32) / 16_000
        clip = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)

        def runner(n: int):
            feats = asr.features([clip] * n)
            return lambda: asr.generate(feats)

        return PerfModel(asr.runtime, asr.dtype, asr.params_count(), runner,
                         "greedy decoding of one-second clips (log-mel features not timed)", {"audio_seconds": 1})

    def perf_input(self, seq_len: int, results: list[dict[str, Any]]) -> str:
        return "1 s clip"

    def examples(self, model: Model, root: Path, field: str, n: int, max_chars: int = 300) -> list[Any]:
        """Up to ``n`` test clips (float32, 16 kHz), one per reference word."""
        return [audio for audio, _ in self.labelled_examples(model, root, field, n)]

    def labelled_examples(self, model: Model, root: Path, field: str, n: int) -> list[tuple[Any, str]]:
        from zoo.data import load_splits

        test = load_splits(model, root, field).test
        seen: dict[str, Any] = {}
        for audio, text in zip(test.audio, test.texts, strict=True):
            seen.setdefault(text, audio)
        return [(audio, text) for text, audio in seen.items()][:n]

    def recognises(self, config: dict[str, Any]) -> bool:
        return config.get("model_type") == "whisper"

    def techniques(self) -> list[Any]:
        from zoo.families.speech_recognition.techniques import TECHNIQUES

        return list(TECHNIQUES)

    # ------------------------------------------------------------ card

    def usage_names(self, node: Any, fmt: str, art: Path | None, root: str | None) -> list[str]:
        return ["onnx-whisper" if fmt == "onnx-whisper" else "whisper"]

    def adapter_usage_name(self, root: str | None) -> str:
        return "whisper-adapter"

    def card_section(self, loaded: Any, store: Any, node: Any, table: dict[str, Any], fmt: str) -> str:
        """The WER interval, the real-time factor and the speaker split."""
        from zoo.families.speech_recognition.card import notes
        from zoo.status import read_results

        return notes(loaded.model(node.model_id), read_results(store, node))

    # ------------------------------------------------------------ Space

    def space_spec(self, node: Any, art: Path, prov: dict[str, Any]) -> dict[str, Any]:
        return {"format": prov.get("format"), "dtype": prov.get("dtype")}

    def space_limits(self) -> dict[str, Any]:
        return {"max_seconds": MAX_SECONDS, "max_upload_mb": MAX_UPLOAD_MB}

    def space_files(self, loaded: Any, model_id: str, out: Path, config: dict[str, Any]) -> None:
        """``whisper_runtime.py`` and the NF4 guard beside the app; test clips as ``examples/<n>-<word>.wav``."""
        from scipy.io import wavfile

        from zoo import nf4_guard
        from zoo.families.speech_recognition import runtime

        shutil.copyfile(Path(runtime.__file__), out / "whisper_runtime.py")
        shutil.copyfile(Path(nf4_guard.__file__), out / "nf4_guard.py")
        (out / "examples").mkdir()
        found = []
        model = loaded.model(model_id)
        for i, (audio, text) in enumerate(self.labelled_examples(model, loaded.root, f"models.{model_id}.dataset",
                                                                 SPACE_EXAMPLES)):
            rel = f"examples/{i}-{text}.wav"
            wavfile.write(out / rel, 16_000, (np.clip(audio, -1, 1) * 32767).astype(np.int16))
            found.append({"file": rel, "label": text})
        config["examples"] = found

    def space_requirements(self, specs: list[dict[str, Any]]) -> list[str]:
        names = list(self.space_packages)
        if any(s["format"] == "onnx-whisper" for s in specs):
            names += ["onnxruntime", "onnx"]
        if any(s.get("dtype") == "nf4" for s in specs):
            names.append("bitsandbytes")
        return names

    def demo_settings(self, folder: Path) -> dict[str, Any]:
        return {"max_body_bytes": (MAX_UPLOAD_MB + 1) * 1_000_000, "max_file_size": f"{MAX_UPLOAD_MB}mb",
                "allowed_paths": [str(folder / "examples")]}

    # ------------------------------------------------------------ zoo pull

    def load_lines(self, folder: Path, fmt: str | None) -> list[str]:
        if fmt == "onnx-whisper":
            return ["import onnxruntime as ort", "from transformers import WhisperProcessor",
                    *(f'{n} = ort.InferenceSession({json.dumps(str(folder / f"{n}.onnx"))}, '
                      'providers=["CPUExecutionProvider"])' for n in ("encoder", "decoder")),
                    f"processor = WhisperProcessor.from_pretrained({json.dumps(str(folder))})"]
        where = json.dumps(str(folder))
        return ["from transformers import WhisperForConditionalGeneration, WhisperProcessor",
                f"model = WhisperForConditionalGeneration.from_pretrained({where})",
                f"processor = WhisperProcessor.from_pretrained({where})"]


FAMILY = SpeechRecognition()
