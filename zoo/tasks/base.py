"""What a task handler answers for evaluation, performance runs, cards and Spaces, whatever the model family."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from zoo.formats import read_provenance
from zoo.registry.schema import Model, Task


@dataclass
class Scores:
    """A variant's task metrics on the evaluated test rows, as results.json records them."""

    metrics: dict[str, float]  # metric name (registry evaluation.metrics) -> value
    samples: int  # test rows scored
    test: dict[str, Any]  # which rows: source, sha256, split, samples, indices_sha256
    kfold: dict[str, dict[str, float]] | None = None  # metric -> {"mean", "std", "k"}
    details: dict[str, Any] = field(default_factory=dict)  # task facts, e.g. how many rows a task metric used
    # per-row labels and predictions, for intervals and paired gates: {"labels", "preds", "n_classes"}; None when
    # the task's metrics are not per-row (perplexity)
    predictions: dict[str, Any] | None = None


@dataclass
class PerfModel:
    """A loaded artifact ready to be timed: ``runner(n)`` builds the inputs of batch ``n`` and returns the call."""

    runtime: str  # "torch" or "onnxruntime"
    dtype: str  # the stored weight type (fp32, fp16, bf16, int8, nf4)
    params: int  # parameter count (4-bit weights counted unpacked)
    runner: Callable[[int], Callable[[], Any]]
    timed: str  # one line: what one timed call does, in words
    inputs: dict[str, Any]  # the input shape besides the batch, e.g. {"seq_len": 128} or {"image_size": 64}


class TaskHandler:
    """One task's data, metrics, performance inputs and example inputs. Subclasses implement every method."""

    task: ClassVar[Task]
    formats: ClassVar[tuple[str, ...]]  # artifact formats (zoo.formats.FORMAT_TASKS) its loader reads
    gpu: ClassVar[bool] = False  # whether its loaders can run on CUDA; otherwise a GPU target is evaluated on CPU

    def load_splits(self, model: Model, root: Path, field: str) -> Any:
        """The dataset split with its seed (callers use :func:`zoo.data.load_splits`, which caches it)."""
        raise NotImplementedError

    def test_rows(self, model: Model, root: Path, field: str) -> Any:
        """The test split, capped at ``evaluation.samples`` rows chosen with ``evaluation.seed``."""
        raise NotImplementedError

    def evaluate(self, artifact_dir: Path, model: Model, root: Path, field: str, device: str, key: str) -> Scores:
        """The declared metrics of the artifact on :meth:`test_rows`.

        Raises:
            ZooError: the artifact does not load, or does not fit the dataset (labels, classes).
        """
        raise NotImplementedError

    def gate_checks(self, model: Model, scores: Scores, ref_results: dict[str, Any]) -> list[dict[str, Any]]:
        """Task checks the gate needs beyond its metric ratio, each ``{"check", "passed", "verdict", ...}``; the gate
        passes only when every one passes. Default: none."""
        return []

    def perf_model(self, artifact_dir: Path, device: str, seq_len: int) -> PerfModel:
        """Load the artifact for timing; ``seq_len`` is the evaluation's sequence length (text tasks)."""
        raise NotImplementedError

    def examples(self, model: Model, root: Path, field: str, n: int) -> list[Any]:
        """Up to ``n`` inputs from the test split for cards and Spaces (texts, prompts or uint8 HxWx3 images)."""
        raise NotImplementedError


def seeded_subset(total: int, samples: int | None, seed: int) -> list[int] | None:
    """Sorted positions of ``samples`` of ``total`` rows chosen with ``seed``; None when every row is kept."""
    if samples is None or samples >= total:
        return None
    return sorted(random.Random(seed).sample(range(total), samples))


def params_from_provenance(artifact_dir: Path) -> int | None:
    value = read_provenance(artifact_dir).get("params_count")
    return int(value) if value else None
