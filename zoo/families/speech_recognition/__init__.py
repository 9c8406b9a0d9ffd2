"""Automatic speech recognition with Whisper: a CTranslate2 base converted to transformers, spoken-word clips split
by speaker, WER with a bootstrap interval and the real-time factor; five techniques of its own."""
