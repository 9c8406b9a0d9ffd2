"""The causal-LM family's text: a plain-text file (or a table's text column) cut into chunks, split by seed.

A text file is cut into chunks of whole consecutive lines of at most ``CHUNK_CHARS`` characters; a table gives one
chunk per row. Chunks are shuffled with ``dataset.split.seed`` and cut into test, train and calibration (from train)
exactly as the classification family's rows are, so the same registry entry always gives the same texts.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.registry.schema import Dataset
from zoo.sources import resolve

CHUNK_CHARS = 512  # about 130 SmolLM2 tokens: one chunk fits a 128–256 token window
MIN_CHUNK_CHARS = 64  # shorter leftovers (a title, a stage direction at a scene's end) are dropped
TABLE_SUFFIXES = (".csv", ".tsv", ".tab")


@dataclass
class TextSplits:
    """Held-out and training texts of one dataset, with the chunk numbers each split took."""

    train: list[str]
    test: list[str]
    calibration: list[str]
    indices: dict[str, list[int]]
    source: str
    source_sha256: str

    def describe(self, split: str) -> dict[str, Any]:
        """What provenance records about one split's texts."""
        idx = self.indices[split]
        return {"source": self.source, "source_sha256": self.source_sha256, "split": split, "samples": len(idx),
                "chunk_chars": CHUNK_CHARS,
                "indices_sha256": hashlib.sha256(json.dumps(idx).encode()).hexdigest()[:16]}


def chunks(text: str, max_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into chunks of whole, non-empty lines joined by newlines, each at most ``max_chars`` long.

    A single line longer than ``max_chars`` becomes a chunk of its own; blank lines end a chunk.
    """
    out: list[str] = []
    cur: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal cur, size
        if cur and size >= MIN_CHUNK_CHARS:
            out.append("\n".join(cur))
        cur, size = [], 0

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            continue
        if cur and size + 1 + len(line) > max_chars:
            flush()
        cur.append(line)
        size += len(line) + (1 if size else 0)
    flush()
    return out


def load_texts(ds: Dataset, root: Path, field: str = "dataset") -> tuple[list[str], str]:
    """All chunks of the dataset's source, in file order, and the source's sha256 (as declared)."""
    path = resolve(ds.source, ds.sha256, root, f"{field}.source", ds.revision)
    if path.is_dir():
        raise ZooError(f"{field}.source: '{path.name}' is a folder: point the source at one text or CSV/TSV file")
    if any(s in path.name.lower() for s in TABLE_SUFFIXES):
        from zoo.data import load_rows

        texts, _, sha = load_rows(ds.model_copy(update={"label": None}), root, field)
        return [t.strip() for t in texts if len(t.strip()) >= MIN_CHUNK_CHARS], sha
    return chunks(path.read_text(encoding="utf-8", errors="replace")), ds.sha256 or ""


def load_splits(ds: Dataset, root: Path, field: str = "dataset") -> TextSplits:
    """Read and split the dataset; the same dataset entry gives the same texts everywhere.

    Raises:
        ZooError: the source cannot be had, or it has fewer chunks than ``split.train + split.test``.
    """
    key = (ds.model_dump_json(), str(root))
    if key not in _CACHE:
        texts, sha = load_texts(ds, root, field)
        need = ds.split.train + ds.split.test
        if len(texts) < need:
            raise ZooError(f"{field}.split: the text gives {len(texts)} chunks of up to {CHUNK_CHARS} characters, "
                           f"but train + test asks for {need}: lower them")
        order = list(range(len(texts)))
        random.Random(ds.split.seed).shuffle(order)
        idx = {"test": order[: ds.split.test], "train": order[ds.split.test : need]}
        idx["calibration"] = idx["train"][: ds.split.calibration]
        _CACHE[key] = TextSplits(*([texts[i] for i in idx[s]] for s in ("train", "test", "calibration")),
                                 indices=idx, source=ds.source, source_sha256=sha)
    return _CACHE[key]


_CACHE: dict[tuple[str, str], TextSplits] = {}
