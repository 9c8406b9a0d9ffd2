"""Load a model's declared dataset and split it deterministically into train, test and calibration rows.

:func:`load_splits` serves every task through its family (``zoo/families``); the labelled-table reader and the
:class:`Split` / :class:`Splits` types below are text classification's.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.registry.schema import Dataset, Model
from zoo.sources import resolve

TABLE_SUFFIXES = (".csv", ".tsv", ".tab")


@dataclass
class Split:
    inputs: list[Any]  # texts (or images for vision)
    labels: list[int] | None  # class indices; None for language modelling
    indices: list[int]  # row numbers in the source, to record exactly which rows were used

    def __len__(self) -> int:
        return len(self.inputs)

    def indices_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.indices).encode()).hexdigest()[:16]

    def head(self, n: int) -> Split:
        return Split(self.inputs[:n], None if self.labels is None else self.labels[:n], self.indices[:n])


@dataclass
class Splits:
    train: Split
    test: Split
    calibration: Split
    label_names: list[str] | None
    source: str
    source_sha256: str

    def describe(self, split: str) -> dict[str, Any]:
        """What provenance records about the rows of one split."""
        s: Split = getattr(self, split)
        return {"source": self.source, "source_sha256": self.source_sha256, "split": split,
                "samples": len(s), "indices_sha256": s.indices_hash()}


def _read_table(path: Path, ds: Dataset, field: str) -> tuple[list[str], list[str] | None]:
    import pandas as pd

    name = path.name.lower()
    for comp in (".bz2", ".gz", ".xz", ".zip"):
        name = name.removesuffix(comp)
    sep = "\t" if name.endswith((".tsv", ".tab")) else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises many types for a bad file; its messages can quote the file
        raise ZooError(f"{field}.source: cannot read '{path.name}' as a table ({type(e).__name__}): check that it "
                       f"is {'tab' if sep == chr(9) else 'comma'}-separated with a header row") from None
    cols = [str(c) for c in df.columns]
    for key, col in (("text", ds.text), ("label", ds.label)):
        if col is not None and col not in df.columns:
            # never list the header: it is the file's content; suggest only a near-spelling of the name asked for
            close = difflib.get_close_matches(col, cols, n=1, cutoff=0.8)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (its header has {len(cols)} columns)"
            raise ZooError(f"{field}.{key}: column '{col}' is not in '{path.name}'{hint}: name one of its header's "
                           "columns")
    return df[ds.text].tolist(), (df[ds.label].tolist() if ds.label else None)


def _read_text(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40]


def load_rows(ds: Dataset, root: Path, field: str) -> tuple[list[str], list[str] | None, str]:
    path = resolve(ds.source, ds.sha256, root, f"{field}.source", ds.revision)
    sha = ds.sha256 or ""
    if path.is_dir():
        raise ZooError(f"{field}.source: '{path.name}' is a folder: point the source at one CSV/TSV/text file")
    if any(s in path.name.lower() for s in TABLE_SUFFIXES):
        texts, labels = _read_table(path, ds, field)
    else:
        texts, labels = _read_text(path), None
    return texts, labels, sha


def load_splits(model: Model, root: Path, field: str = "dataset") -> Any:
    """Read the dataset of ``model`` and split it with its seed, in the form its task needs.

    Text classification gives :class:`Splits` (below); image classification
    :class:`~zoo.families.image_classification.data.ImageSplits`;
    text generation :class:`~zoo.families.text_generation.data.TextSplits`. Each is read once per
    process and dataset entry. The loader is the task family's.

    Raises:
        ZooError: the source cannot be had or read, a column is missing, or there are too few rows for the split.
    """
    from zoo.families import family_of

    key = (model.task, model.dataset.model_dump_json(), str(root))
    if key not in _CACHE:
        _CACHE[key] = family_of(model.task).load_splits(model, root, field)
    return _CACHE[key]


def load_labelled_splits(ds: Dataset, root: Path, field: str = "dataset") -> Splits:
    """The text-classification split of a table: rows whose label is not in ``dataset.labels`` are dropped; train
    and test never share a row; calibration rows come from train.

    Raises:
        ZooError: a column is missing or there are too few rows for the split.
    """
    return _split(ds, root, field)


_CACHE: dict[tuple[str, str, str], Any] = {}


def _split(ds: Dataset, root: Path, field: str) -> Splits:
    texts, raw_labels, sha = load_rows(ds, root, field)
    rows = list(range(len(texts)))
    label_names: list[str] | None = None
    labels: list[int] | None = None
    if raw_labels is not None:
        label_names = list(ds.labels) if ds.labels else sorted(set(raw_labels))
        index = {n: i for i, n in enumerate(label_names)}
        rows = [i for i in rows if raw_labels[i] in index and texts[i].strip()]
        labels = [index.get(lbl, -1) for lbl in raw_labels]
        if ds.labels and not rows:
            found = sorted(set(raw_labels))[:10]
            raise ZooError(f"{field}.labels: no row has a label in {ds.labels} (found: {', '.join(found)})")
    need = ds.split.train + ds.split.test
    if len(rows) < need:
        raise ZooError(f"{field}.split: {len(rows)} usable rows, but train + test asks for {need}: lower them")
    rng = random.Random(ds.split.seed)
    rng.shuffle(rows)
    test_rows, train_rows = rows[: ds.split.test], rows[ds.split.test : need]
    calib_rows = train_rows[: ds.split.calibration]

    def make(idx: list[int]) -> Split:
        return Split([texts[i] for i in idx], None if labels is None else [labels[i] for i in idx], idx)

    return Splits(make(train_rows), make(test_rows), make(calib_rows), label_names, ds.source, sha)
