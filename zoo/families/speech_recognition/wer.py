"""WER with its bootstrap interval, and loading an artifact (or a CTranslate2 base) for transcription."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError

BOOTSTRAP = 1000  # resamples of the test clips for the WER interval


def load_transcriber(artifact_dir: Path, device: str = "cpu") -> Any:
    """The artifact behind ``transcribe(audio)``; a CTranslate2 base folder is converted first.

    Raises:
        ZooError: the folder holds no Whisper model.
    """
    import json

    from zoo.families.speech_recognition.ct2 import model_dir
    from zoo.families.speech_recognition.runtime import ONNX_FILES, open_folder
    from zoo.formats import threads

    folder = artifact_dir if all((artifact_dir / f).is_file() for f in ONNX_FILES) else model_dir(artifact_dir)
    if not (folder / "encoder.onnx").is_file():
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") != "whisper":
            raise ZooError(f"'{artifact_dir}' is not a Whisper model (model_type {config.get('model_type')}): "
                           "point the source at a Whisper checkpoint")
    return open_folder(folder, device, threads())


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return float(jiwer.wer(refs, hyps))


def wer_interval(refs: list[str], hyps: list[str], seed: int, n: int = BOOTSTRAP) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the corpus WER over resampled clips (errors and words per clip)."""
    import jiwer

    errors = np.array([jiwer.process_words(r, h).wer * len(r.split()) for r, h in zip(refs, hyps, strict=True)])
    words = np.array([len(r.split()) for r in refs], dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(refs), size=(n, len(refs)))
    stats = errors[idx].sum(axis=1) / np.maximum(words[idx].sum(axis=1), 1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)
