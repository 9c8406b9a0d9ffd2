"""The Whisper base of `whisper-tiny-digits`: its conversion checked against CTranslate2 on the same clips, and the
untouched base's WER (95% bootstrap interval) and real-time factor on the test speakers.

    ZOO_THREADS=2 .venv/bin/python benchmarks/whisper_base.py [--clips 10]

Needs `pip install ctranslate2` for the comparison (skipped with a note otherwise). Prints one table.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "whisper-tiny-digits"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=10, help="clips compared with CTranslate2")
    args = ap.parse_args()
    from zoo import registry
    from zoo.build import base_dir
    from zoo.data import load_splits
    from zoo.families import family_of
    from zoo.families.speech_recognition.ct2 import model_dir
    from zoo.families.speech_recognition.runtime import normalize
    from zoo.families.speech_recognition.wer import load_transcriber

    loaded = registry.load(ROOT / "registry.yaml")
    model = loaded.model(MODEL)
    src = base_dir(loaded, MODEL)
    conv = model_dir(src)
    field = f"models.{MODEL}.dataset"
    rows = family_of(model.task).test_rows(model, loaded.root, field)
    load_splits(model, loaded.root, field)
    ours = load_transcriber(conv)
    clips = rows.audio[: args.clips]
    hyp_ours = ours.transcribe(clips, 8)
    if importlib.util.find_spec("ctranslate2"):
        import ctranslate2

        ct = ctranslate2.models.Whisper(str(src), device="cpu", compute_type="float32")
        feats = ours.features(clips)
        tok = ours.processor.tokenizer
        prompt = [tok.convert_tokens_to_ids("<|startoftranscript|>"), tok.convert_tokens_to_ids("<|notimestamps|>")]
        res = ct.generate(ctranslate2.StorageView.from_array(feats), [prompt] * len(clips), beam_size=1,
                          max_length=24)
        hyp_ct = [tok.decode(r.sequences_ids[0], skip_special_tokens=True).strip() for r in res]
        same = sum(a == b for a, b in zip(hyp_ours, hyp_ct, strict=True))
        print(f"conversion check: {same}/{len(clips)} transcripts identical to CTranslate2 {ctranslate2.__version__}"
              " (float32, greedy)")
        for a, b, r in zip(hyp_ours, hyp_ct, rows.texts, strict=False):
            print(f"  ref {r!r:10} ours {a!r:14} ctranslate2 {b!r}")
    else:
        print("conversion check skipped: ctranslate2 is not installed (pip install ctranslate2)")
    start = time.perf_counter()
    scores = family_of(model.task).evaluate(src, model, loaded.root, field, "cpu", f"{MODEL}:base")
    lo, hi = scores.details["wer_ci95"]
    print(f"untouched base: WER {scores.metrics['wer']:.4f} (95% CI {lo:.4f}-{hi:.4f}, n={scores.samples} clips of "
          f"{', '.join(scores.test['speakers'])}), RTF {scores.details['rtf']:.3f}, "
          f"{time.perf_counter() - start:.0f} s")
    print("  normalised examples:", [(e["reference"], normalize(e["hypothesis"])) for e in scores.details["examples"]])


if __name__ == "__main__":
    main()
