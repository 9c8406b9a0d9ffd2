"""Spoken-word clips (the Free Spoken Digit Dataset layout ``<digit>_<speaker>_<n>.wav``) split by speaker: the test
speakers are never heard in training. Audio is read as float32 mono and resampled to Whisper's 16 kHz."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zoo.errors import ZooError
from zoo.families.speech_recognition.runtime import SAMPLE_RATE, to_16k
from zoo.registry.schema import Dataset
from zoo.sources import resolve

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<n>\d+)\.wav$")


class SpeechOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    test_speakers: list[str] = Field(min_length=1)  # never in train or calibration
    max_seconds: float = Field(4.0, gt=0, le=30)  # longer clips are cut


@dataclass
class Clips:
    audio: list[np.ndarray]  # float32 mono at 16 kHz
    texts: list[str]  # reference transcripts
    speakers: list[str]
    indices: list[int]  # positions in the sorted file list

    def __len__(self) -> int:
        return len(self.audio)

    @property
    def inputs(self) -> list[np.ndarray]:
        return self.audio

    def indices_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.indices).encode()).hexdigest()[:16]

    def seconds(self) -> float:
        return float(sum(len(a) for a in self.audio) / SAMPLE_RATE)

    def subset(self, keep: list[int]) -> Clips:
        return Clips([self.audio[i] for i in keep], [self.texts[i] for i in keep],
                     [self.speakers[i] for i in keep], [self.indices[i] for i in keep])


@dataclass
class SpeechSplits:
    train: Clips
    test: Clips
    calibration: Clips
    source: str
    source_sha256: str
    label_names: None = None

    def describe(self, split: str) -> dict[str, Any]:
        s: Clips = getattr(self, split)
        return {"source": self.source, "source_sha256": self.source_sha256, "split": split, "samples": len(s),
                "indices_sha256": s.indices_hash(), "speakers": sorted(set(s.speakers))}


def read_wav(path: Path, max_seconds: float = 30.0) -> np.ndarray:
    """A WAV file as float32 mono at 16 kHz, cut to ``max_seconds``.

    Raises:
        ZooError: the file is not a PCM WAV.
    """
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError) as e:
        raise ZooError(f"'{path.name}' is not a readable WAV file ({e}): convert it to PCM WAV") from None
    return to_16k(rate, data, max_seconds, resample_poly)


def load_speech_splits(ds: Dataset, root: Path, field: str = "dataset") -> SpeechSplits:
    """Train rows from the other speakers, test rows from ``test_speakers``, each subset with ``split.seed``.

    Raises:
        ZooError: the source holds no ``<digit>_<speaker>_<n>.wav`` file, a test speaker is unknown, or too few rows.
    """
    try:
        o = SpeechOptions(**(ds.builder.options if ds.builder else {}))
    except ValidationError as e:
        err = e.errors()[0]
        raise ZooError(f"{field}.builder.options.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    folder = resolve(ds.source, ds.sha256, root, f"{field}.source", ds.revision)
    files = sorted(p for p in folder.glob("*.wav") if _NAME.match(p.name)) if folder.is_dir() else []
    if not files:
        raise ZooError(f"{field}.source: no <digit>_<speaker>_<n>.wav file in '{folder}': point it at the recordings")
    speakers = [_NAME.match(p.name)["speaker"] for p in files]
    if bad := sorted(set(o.test_speakers) - set(speakers)):
        raise ZooError(f"{field}.builder.options.test_speakers: {bad} not in the data (speakers: "
                       f"{', '.join(sorted(set(speakers)))})")
    rng = random.Random(ds.split.seed)
    test_idx = [i for i, s in enumerate(speakers) if s in o.test_speakers]
    train_idx = [i for i, s in enumerate(speakers) if s not in o.test_speakers]
    rng.shuffle(test_idx)
    rng.shuffle(train_idx)
    if len(test_idx) < ds.split.test or len(train_idx) < ds.split.train:
        raise ZooError(f"{field}.split: {len(train_idx)} train / {len(test_idx)} test clips by speaker, asked "
                       f"{ds.split.train} / {ds.split.test}: lower them")

    def make(idx: list[int]) -> Clips:
        idx = sorted(idx)
        return Clips([read_wav(files[i], o.max_seconds) for i in idx],
                     [WORDS[int(_NAME.match(files[i].name)["digit"])] for i in idx], [speakers[i] for i in idx], idx)

    train = make(train_idx[: ds.split.train])
    return SpeechSplits(train, make(test_idx[: ds.split.test]), train.subset(list(range(min(ds.split.calibration,
                                                                                                  len(train))))),
                        ds.source, ds.sha256 or "")
