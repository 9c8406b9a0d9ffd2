"""Tiny models and data built from configs, so that tests exercise the real code paths in seconds."""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE = ["good", "great", "fine", "lovely", "superb", "brilliant", "moving", "funny", "smart", "warm"]
NEGATIVE = ["bad", "awful", "dull", "boring", "weak", "clumsy", "tedious", "flat", "stale", "messy"]
FILLER = ["the", "film", "movie", "story", "plot", "acting", "was", "is", "very", "quite", "a", "and", "cast"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_bert(path: Path, layers: int = 4, hidden: int = 64) -> Path:
    """A randomly initialised BERT encoder (like the MiniLM base: no task head) with a word-level tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER))
    # transformers 5 takes the vocabulary itself (a vocab_file argument is ignored) and saves tokenizer.json only
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=hidden * 2, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    return path


def make_sentiment_csv(path: Path, rows: int = 240, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        for i in range(rows):
            label = "fresh" if i % 2 else "rotten"
            words = POSITIVE if label == "fresh" else NEGATIVE
            sent = rng.sample(FILLER, 4) + rng.sample(words, 2)
            rng.shuffle(sent)
            w.writerow([" ".join(sent), label])
        w.writerow(["the plot is a plot", "plot"])  # a row whose label is not declared: dropped
    return path


REGISTRY = """\
org: testorg
targets:
  x86-avx512: {device: cpu, arch: x86_64, isa: avx512, runtime: onnxruntime, dtypes: [fp32, int8]}
  cuda: {device: gpu, runtime: torch, dtypes: [fp32, fp16, bf16, nf4]}
models:
  tiny-sentiment:
    task: text-classification
    license: apache-2.0
    base: {source: "file:assets/tiny-bert"}
    dataset:
      source: "file:assets/reviews.csv"
      text: text
      label: category
      labels: [rotten, fresh]
      split: {train: 160, test: 60, calibration: 16, seed: 0}
    evaluation:
      metrics: [accuracy, f1]
      batch_size: 4
      seq_len: 16
      repeats: 3
      gate: {min_ratio: 0.9, of: parent}
    variants:
      fp32: {kind: fp32, from: base, recipe: finetune, target: x86-avx512}
      w16a16: {kind: w16a16, from: fp32, recipe: fp16, target: cuda}
      int8: {kind: int8, from: fp32, recipe: int8, target: x86-avx512}
      qlora-4bit: {kind: qlora-4bit, from: base, recipe: qlora, target: cuda}
      distilled: {kind: distilled, from: fp32, recipe: distill, target: x86-avx512}
"""

RECIPES = {
    "finetune": "technique: finetune\nepochs: 6\nlr: 1.0e-3\nbatch_size: 16\nmax_length: 16\n",
    "fp16": "technique: half\ndtype: fp16\n",
    "int8": "technique: onnx-int8\nmode: static\ncalibration: {method: minmax, samples: 16}\nmax_length: 16\n",
    "qlora": "technique: qlora-nf4\nr: 8\nalpha: 16\nepochs: 6\nlr: 5.0e-3\nbatch_size: 16\nmax_length: 16\n",
    "distill": "technique: distill-kd\nstudent_layers: 2\nepochs: 4\nlr: 1.0e-3\nbatch_size: 16\nmax_length: 16\n",
}


def make_tiny_zoo(root: Path) -> Path:
    """A complete project folder (registry.yaml, recipes/, assets/) around the tiny model; returns the registry."""
    make_tiny_bert(root / "assets" / "tiny-bert")
    make_sentiment_csv(root / "assets" / "reviews.csv")
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    for name, text in RECIPES.items():
        (root / "recipes" / f"{name}.yaml").write_text(text)
    (root / "registry.yaml").write_text(REGISTRY)
    return root / "registry.yaml"


def rerecord_provenance(artifact: Path) -> None:
    """Record an artifact's current file hashes in its provenance.json: a test that damages weights on purpose
    simulates a bad *build* (which the gate must catch), not damage at rest (which verification refuses first)."""
    import json

    from zoo.sources import sha256_file

    prov_path = artifact / "provenance.json"
    prov = json.loads(prov_path.read_text())
    prov["files"] = {p.relative_to(artifact).as_posix(): sha256_file(p) for p in sorted(artifact.rglob("*"))
                     if p.is_file() and p.name != "provenance.json"}
    prov_path.write_text(json.dumps(prov, indent=2, sort_keys=True) + "\n")


TINY_FAMILY = Path(__file__).resolve().parent / "families" / "tiny_tabular"
TINY_FAMILY_RECIPES = {
    "tabular-fit": "technique: tabular-fit\nepochs: 300\nlr: 0.05\n",
    "tabular-half": "technique: tabular-half\n",
}


def tiny_family_registry(folder: str) -> str:
    """A registry whose one model is of the plugin family in ``folder`` (a copy of :data:`TINY_FAMILY` beside it)."""
    import hashlib

    sha = hashlib.sha256((TINY_FAMILY / "iris.csv").read_bytes()).hexdigest()
    return f"""\
families: [{folder}]
org: testorg
targets:
  cpu: {{device: cpu, arch: x86_64, runtime: torch, dtypes: [fp32, fp16]}}
models:
  iris-mlp:
    task: tabular-classification
    license: cc-by-4.0
    description: Fisher's iris measurements classified by a two-layer MLP.
    base: {{source: "file:{folder}/base.json"}}
    dataset:
      source: "file:{folder}/iris.csv"
      sha256: {sha}
      label: species
      labels: [setosa, versicolor, virginica]
      license: cc-by-4.0
      split: {{train: 90, test: 60, calibration: 8, seed: 0}}
    evaluation:
      metrics: [accuracy, f1]
      batch_size: 4
      repeats: 3
      gate: {{min_ratio: 0.9, of: parent}}
    variants:
      fp32: {{kind: fp32, from: base, recipe: tabular-fit, target: cpu}}
      w16a16: {{kind: w16a16, from: fp32, recipe: tabular-half, target: cpu}}
"""
