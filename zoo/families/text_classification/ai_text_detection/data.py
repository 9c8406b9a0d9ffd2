"""Human vs machine text from fast-detect-gpt's ``*.raw_data.json`` pairs (plus optional SmolLM2 text), split by
source text so that no human text and its machine continuations straddle train and test.

Each machine text continues the first ~30 tokens of its human text; that shared opening is cut from both (the
common word prefix of the pair, at least ``strip_words`` words), or the detector would learn the pairing.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zoo.data import Split, Splits
from zoo.errors import ZooError
from zoo.registry.schema import Dataset
from zoo.sources import resolve

LABELS = ["human", "machine"]


class DetectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    domains: list[str] | None = None  # file prefixes to keep (xsum, squad, writing, pubmed); None: all
    holdout: list[str] = []  # generators never trained on: their machine rows are test-only
    strip_words: int = Field(30, ge=0, le=200)  # at least this many opening words are cut from both texts
    min_words: int = Field(20, ge=1)  # rows shorter than this after the cut are dropped
    max_words: int = Field(200, ge=10)  # longer texts are cut to this many words
    extra: list[str] = []  # more raw_data.json files (e.g. from generate.py), relative to the project folder


@dataclass
class DetectorSplits(Splits):
    """Splits plus, for every source row number, the row's generator ("human" for human text) and source group."""

    generators: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def _options(ds: Dataset, field_: str) -> DetectorOptions:
    try:
        return DetectorOptions(**(ds.builder.options if ds.builder else {}))
    except ValidationError as e:
        err = e.errors()[0]
        raise ZooError(f"{field_}.builder.options.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def _cut(human: str, machine: str, o: DetectorOptions) -> tuple[str, str]:
    h, m = human.split(), machine.split()
    shared = 0
    while shared < min(len(h), len(m)) and h[shared] == m[shared]:
        shared += 1
    cut = max(shared, o.strip_words)
    return " ".join(h[cut : cut + o.max_words]), " ".join(m[cut : cut + o.max_words])


def read_pairs(files: list[Path], o: DetectorOptions, field_: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """Texts, labels, generators and group keys (sha256 of the human text) of every usable row, human rows once."""
    texts: list[str] = []
    labels: list[str] = []
    gens: list[str] = []
    groups: list[str] = []
    seen: set[str] = set()
    for path in files:
        domain, _, generator = path.name.removesuffix(".raw_data.json").partition("_")
        if o.domains and domain not in o.domains:
            continue
        try:
            data = json.loads(path.read_text())
            pairs = list(zip(data["original"], data["sampled"], strict=True))
        except (ValueError, KeyError, TypeError) as e:
            raise ZooError(f"{field_}.source: '{path.name}' is not a raw_data.json with equal 'original' and "
                           f"'sampled' lists ({e}): point the source at fast-detect-gpt's data folder") from None
        for human, machine in pairs:
            group = hashlib.sha256(human.encode()).hexdigest()[:16]
            h, m = _cut(human, machine, o)
            if group not in seen and len(h.split()) >= o.min_words:
                seen.add(group)
                texts.append(h), labels.append("human"), gens.append("human"), groups.append(group)
            if len(m.split()) >= o.min_words:
                texts.append(m), labels.append("machine"), gens.append(generator), groups.append(group)
    return texts, labels, gens, groups


def load_detector_splits(ds: Dataset, root: Path, field_: str = "dataset") -> DetectorSplits:
    """Train/test/calibration rows split by source group with ``split.seed``; held-out generators only in test.

    Raises:
        ZooError: the source has no raw_data.json, or too few rows for the split.
    """
    o = _options(ds, field_)
    path = resolve(ds.source, ds.sha256, root, f"{field_}.source", ds.revision)
    files = sorted(path.rglob("*.raw_data.json")) if path.is_dir() else [path]
    files += [(root / f).resolve() for f in o.extra]
    if not files:
        raise ZooError(f"{field_}.source: no *.raw_data.json under '{path}': point it at fast-detect-gpt's data")
    texts, labels, gens, groups = read_pairs(files, o, field_)
    known = set(gens)
    if bad := [g for g in o.holdout if g not in known]:
        raise ZooError(f"{field_}.builder.options.holdout: no generator {bad} in the data (found: "
                       f"{', '.join(sorted(known - {'human'}))})")
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    order = sorted(by_group)
    random.Random(ds.split.seed).shuffle(order)
    test: list[int] = []
    train: list[int] = []
    for g in order:
        rows = by_group[g]
        if len(test) < ds.split.test:
            test += rows
        elif len(train) < ds.split.train:
            train += [i for i in rows if gens[i] not in o.holdout]
    if len(test) < ds.split.test or len(train) < min(ds.split.train, 2):
        raise ZooError(f"{field_}.split: {len(texts)} usable rows give {len(train)} train / {len(test)} test, "
                       f"asked {ds.split.train} / {ds.split.test}: lower them")
    test, train = test[: ds.split.test], train[: ds.split.train]
    index = {n: i for i, n in enumerate(LABELS)}
    y = [index[lbl] for lbl in labels]

    def make(idx: list[int]) -> Split:
        return Split([texts[i] for i in idx], [y[i] for i in idx], idx)

    rng = random.Random(ds.split.seed + 1)
    rng.shuffle(train)
    return DetectorSplits(make(train), make(test), make(train[: ds.split.calibration]), list(LABELS), ds.source,
                          ds.sha256 or "", gens, groups)


def per_generator(gens: list[str], indices: list[int], labels: list[int], preds: list[int]) -> dict[str, Any]:
    """Accuracy and row count per generator (human rows: the share correctly called human)."""
    out: dict[str, dict[str, float]] = {}
    for g in sorted({gens[i] for i in indices}):
        hits = [int(p == y) for i, y, p in zip(indices, labels, preds, strict=True) if gens[i] == g]
        out[g] = {"accuracy": sum(hits) / len(hits), "rows": len(hits)}
    return out


def groups_disjoint(splits: DetectorSplits) -> bool:
    tr = {splits.groups[i] for i in splits.train.indices}
    return not tr & {splits.groups[i] for i in splits.test.indices}
