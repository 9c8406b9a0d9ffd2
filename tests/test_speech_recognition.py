"""The speech-recognition family: the CTranslate2 → transformers converter (exact round trip), the speaker split,
WER with its interval, and `zoo run` end to end on a tiny Whisper (five variants, card, Space)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tiny_speech import SPEAKERS, make_clips, make_ct2_base, make_tiny_speech_zoo, tiny_whisper

from zoo.errors import ZooError


def test_ct2_conversion_is_exact(tmp_path):
    from transformers import WhisperForConditionalGeneration

    from zoo.families.speech_recognition.ct2 import converted

    make_ct2_base(tmp_path / "ct2")
    out = converted(tmp_path / "ct2", cache=tmp_path / "cache", log=lambda _: None)
    got = WhisperForConditionalGeneration.from_pretrained(out).state_dict()
    want = tiny_whisper(got["model.decoder.embed_tokens.weight"].shape[0]).state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert np.array_equal(v.half().float().numpy(), got[k].numpy()), k
    assert json.loads((out / "ct2.json").read_text())["decoder_layers"] == 2


def test_not_a_ct2_whisper_is_one_line_error(tmp_path):
    from zoo.families.speech_recognition.ct2 import model_dir

    (tmp_path / "x").mkdir()
    with pytest.raises(ZooError, match="neither a transformers folder nor a CTranslate2 Whisper"):
        model_dir(tmp_path / "x")


def test_speaker_split_never_shares_a_speaker(tmp_path, monkeypatch):
    from zoo.families.speech_recognition.data import load_speech_splits
    from zoo.registry.schema import Dataset
    from zoo.sources import sha256_tree

    clips = make_clips(tmp_path / "mirror" / "fsdd" / "recordings")
    monkeypatch.setenv("ZOO_MIRRORS", str(tmp_path / "mirror"))
    ds = Dataset(source="github:example/fsdd@26eb9aa#recordings", sha256=sha256_tree(clips), label=None,
                 builder={"name": "fsdd", "options": {"test_speakers": [SPEAKERS[-1]]}},
                 split={"train": 40, "test": 12, "calibration": 4, "seed": 0})
    s = load_speech_splits(ds, tmp_path, "dataset")
    assert set(s.test.speakers) == {SPEAKERS[-1]} and SPEAKERS[-1] not in s.train.speakers
    assert len(s.train) == 40 and len(s.test) == 12 and s.train.audio[0].dtype == np.float32
    assert len(s.train.audio[0]) == 8000  # 0.5 s at 8 kHz resampled to 16 kHz
    bad = ds.model_copy(update={"builder": ds.builder.model_copy(update={"options": {"test_speakers": ["zed"]}})})
    with pytest.raises(ZooError, match=r"test_speakers: \['zed'\] not in the data"):
        load_speech_splits(bad, tmp_path, "dataset")


def test_wer_interval_brackets_the_wer():
    from zoo.families.speech_recognition.runtime import normalize
    from zoo.families.speech_recognition.wer import wer_interval, word_error_rate

    refs = ["one", "two", "three", "four"] * 5
    hyps = [normalize(h) for h in ["One.", "2", "tree", "for"] * 5]
    wer = word_error_rate(refs, hyps)
    lo, hi = wer_interval(refs, hyps, seed=0)
    assert wer == pytest.approx(0.5) and lo <= wer <= hi and hi - lo > 0


def test_family_registers_its_techniques_and_needs_its_builder(tmp_path):
    from zoo.families import family_of
    from zoo.registry.schema import Model
    from zoo.techniques import TECHNIQUES

    family = family_of("automatic-speech-recognition")
    assert family.folder.name == "speech_recognition" and family.metrics == ("wer",)
    for name in ("whisper-finetune", "whisper-half", "whisper-onnx-int8", "whisper-qlora-nf4", "whisper-distill"):
        assert TECHNIQUES.get(name).tasks == frozenset({family.task})
    model = Model.model_validate({
        "task": family.task, "license": "mit", "base": {"source": "file:x"},
        "dataset": {"source": "github:example/fsdd@26eb9aa#recordings", "label": None},
        "evaluation": {"metrics": ["wer"]},
        "variants": {"fp32": {"kind": "fp32", "recipe": "w", "target": "cpu"}}})
    with pytest.raises(ZooError, match=r"dataset.builder: automatic-speech-recognition reads clips with a builder"):
        family.load_splits(model, tmp_path, "dataset")


@pytest.mark.slow
def test_zoo_run_speech_end_to_end(tmp_path):
    project = tmp_path / "project"
    reg = make_tiny_speech_zoo(project, tmp_path / "mirror")
    env = {**os.environ, "ZOO_MIRRORS": str(tmp_path / "mirror"), "COLUMNS": "200", "ZOO_THREADS": "1",
           "ZOO_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "zoo", "run"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    from zoo import plan, registry
    from zoo.status import read_results
    from zoo.store import Store

    loaded = registry.load(reg)
    store = Store.for_registry(loaded.path)
    nodes = {n.variant_id: n for n in plan.make(loaded)}
    assert set(nodes) == {"fp32", "w16a16", "int8", "qlora-4bit", "distilled"}
    for vid, node in nodes.items():
        res = read_results(store, node)
        assert res["metrics"]["wer"] >= 0.0, vid
        lo, hi = res["details"]["wer_ci95"]
        assert lo <= res["metrics"]["wer"] <= hi and res["details"]["rtf"] > 0, vid
        assert (res["intervals"]["wer"]["low"], res["intervals"]["wer"]["high"]) == (lo, hi), vid
    assert (store.artifact(nodes["int8"].hash) / "encoder.onnx").is_file()
    distilled = json.loads((store.artifact(nodes["distilled"].hash) / "config.json").read_text())
    assert distilled["decoder_layers"] == 1
    space = store.space("tiny-asr")
    config = json.loads((space / "variants.json").read_text())
    assert config["examples"] and (space / config["examples"][0]["file"]).is_file()
    assert (space / "whisper_runtime.py").is_file()
