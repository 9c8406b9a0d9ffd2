"""A tiny AI-text-detector project: a fast-detect-gpt-like mirror (raw_data.json pairs from three "generators"
whose continuations share the human opening) and the tiny BERT of ``tests/tiny.py``."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tiny import FILLER, NEGATIVE, POSITIVE, RECIPES, make_tiny_bert

GENERATORS = ["gen-a", "gen-b", "gen-c"]
REPO = "example/fast-detect-gpt"
COMMIT = "971b052"
SUBDIR = "exp_main/data"


def make_pairs_mirror(mirror: Path, pairs: int = 40, seed: int = 0) -> Path:
    """``<mirror>/fast-detect-gpt/exp_main/data/<domain>_<generator>.raw_data.json``: human texts use one word list,
    machine texts another (learnable), and both start with the same 32-word opening (which must be cut)."""
    rng = random.Random(seed)
    folder = mirror / "fast-detect-gpt" / SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    openings = [" ".join(rng.choice(FILLER) for _ in range(32)) for _ in range(pairs)]
    humans = [o + " " + " ".join(rng.choice(NEGATIVE + FILLER) for _ in range(24)) for o in openings]
    for gen in GENERATORS:
        machine = [o + " " + " ".join(rng.choice(POSITIVE + FILLER) for _ in range(24)) for o in openings]
        (folder / f"xsum_{gen}.raw_data.json").write_text(json.dumps({"original": humans, "sampled": machine}))
    return folder


REGISTRY = """\
org: testorg
targets:
  x86-avx512: {{device: cpu, arch: x86_64, isa: avx512, runtime: onnxruntime, dtypes: [fp32, int8]}}
  cuda: {{device: gpu, runtime: torch, dtypes: [fp32, fp16, bf16, nf4]}}
models:
  tiny-detector:
    task: text-classification
    license: apache-2.0
    base: {{source: "file:assets/tiny-bert"}}
    dataset:
      source: "github:{repo}@{commit}#{subdir}"
      sha256: {sha}
      builder: {{name: fast-detect-gpt, options: {{holdout: [gen-c], strip_words: 30, min_words: 5}}}}
      labels: [human, machine]
      split: {{train: 90, test: 60, calibration: 16, seed: 0}}
    evaluation:
      metrics: [accuracy, f1, roc_auc]
      batch_size: 4
      seq_len: 32
      repeats: 3
      kfold: 3
      gate: {{min_ratio: 0.5, of: parent}}
    variants:
      fp32: {{kind: fp32, from: base, recipe: finetune, target: x86-avx512}}
      int8: {{kind: int8, from: fp32, recipe: int8, target: x86-avx512}}
      qlora-4bit: {{kind: qlora-4bit, from: base, recipe: qlora, target: cuda}}
      distilled: {{kind: distilled, from: fp32, recipe: distill, target: x86-avx512}}
"""


def make_tiny_detector_zoo(root: Path, mirror: Path) -> Path:
    """The project folder (registry.yaml, recipes/, assets/) and its data mirror; returns the registry path.
    Set ``ZOO_MIRRORS`` to ``mirror`` before loading it."""
    from zoo.sources import sha256_tree

    make_tiny_bert(root / "assets" / "tiny-bert")
    folder = make_pairs_mirror(mirror)
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    for name, text in RECIPES.items():
        (root / "recipes" / f"{name}.yaml").write_text(text)
    (root / "recipes" / "finetune.yaml").write_text(
        "technique: finetune\nmethod: lora\nepochs: 8\nlr: 5.0e-3\nbatch_size: 16\nmax_length: 32\n")
    (root / "registry.yaml").write_text(REGISTRY.format(repo=REPO, commit=COMMIT, subdir=SUBDIR,
                                                        sha=sha256_tree(folder)))
    return root / "registry.yaml"
