"""What a speech variant's card adds below its metrics: the WER interval, the real-time factor, the speaker split."""

from __future__ import annotations

from typing import Any


def notes(model: Any, results: dict[str, Any] | None) -> str:
    d = (results or {}).get("details") or {}
    if not d:
        return ""
    opts = dict(model.dataset.builder.options) if model.dataset.builder else {}
    lo, hi = d.get("wer_ci95") or (None, None)
    lines = []
    if lo is not None:
        lines.append(f"WER 95% bootstrap interval: {lo:.4f} – {hi:.4f} over {results['samples']} clips of speakers "
                     f"never heard in training ({', '.join(opts.get('test_speakers', []))}).")
    if d.get("rtf") is not None:
        lines.append(f"Real-time factor {d['rtf']:.3f} ({d['audio_seconds']:.0f} s of audio; below 1 is faster than "
                     "real time).")
    lines.append("\nLimitations: evaluated on isolated spoken digits (8 kHz recordings, six speakers); WER on "
                 "conversational or noisy speech will be higher.")
    return "\n".join(lines) + "\n"
