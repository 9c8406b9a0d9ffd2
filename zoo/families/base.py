"""The Family interface: the one view the stages (build, evaluate, report, card, Space, pull) have of a task family."""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from zoo.formats import read_provenance
from zoo.registry.schema import Model


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
    # 95% intervals the family computes itself, for metrics that are not per-row (ROC AUC, WER): metric ->
    # {"value", "low", "high", "level", "resamples", "rows", "method"}, as zoo.metrics.interval returns
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class PerfModel:
    """A loaded artifact ready to be timed: ``runner(n)`` builds the inputs of batch ``n`` and returns the call."""

    runtime: str  # "torch" or "onnxruntime"
    dtype: str  # the stored weight type (fp32, fp16, bf16, int8, nf4)
    params: int  # parameter count (4-bit weights counted unpacked)
    runner: Callable[[int], Callable[[], Any]]
    timed: str  # one line: what one timed call does, in words
    inputs: dict[str, Any]  # the input shape besides the batch, e.g. {"seq_len": 128} or {"image_size": 64}


class Family:
    """Everything the stages need from one task family; the stages ask here and hold no task names.

    A family is a folder ``zoo/families/<name>/`` (or a plugin folder named in registry.yaml's ``families:``) whose
    ``family.py`` defines ``FAMILY``, an instance of a subclass. Data, evaluation, timing and examples must be
    implemented; the card, Space and pull hooks have defaults that read the folder's own ``usage/`` snippet
    templates and ``space/app.py``.
    """

    task: ClassVar[str]  # the registry's ``task:`` spelling (also the card's pipeline_tag)
    formats: ClassVar[tuple[str, ...]]  # artifact formats its loaders read; each format belongs to one family
    metrics: ClassVar[tuple[str, ...]]  # metrics (zoo.metrics names) a registry may declare for this task
    gpu: ClassVar[bool] = False  # whether its loaders can run on CUDA; otherwise a GPU target is evaluated on CPU
    example_unit: ClassVar[str] = "rows"  # what a test row is called on cards ("images", "passages")
    example_text: ClassVar[str | None] = None  # how cards describe a non-text example input; None: a test text
    auto_class: ClassVar[str | None] = None  # the transformers Auto class that loads its transformers formats
    space_packages: ClassVar[tuple[str, ...]] = ("gradio", "huggingface_hub")  # what its Space app always imports
    # the Space README's first paragraph; {model_id} is filled in
    space_intro: ClassVar[str] = ("Type a text and every variant of `{model_id}` classifies it side by side, each with "
                                  "its latency on this Space's hardware.")
    limitations: ClassVar[tuple[str, ...]] = ()  # lines the card's limitations list adds for every variant
    adapter_note: ClassVar[str | None] = None  # what a LoRA adapter of this family carries besides the LoRA weights

    @property
    def folder(self) -> Path:
        """The family's folder (its ``usage/``, ``space/`` and code)."""
        return Path(inspect.getfile(type(self))).resolve().parent

    # ------------------------------------------------------------ data, evaluation, timing

    def techniques(self) -> list[Any]:
        """The techniques only this family builds (registered beside the generic ones). Default: none."""
        return []

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

    def perf_input(self, seq_len: int, results: list[dict[str, Any]]) -> str:
        """What one latency sample's input is, in a few words, for the report."""
        return f"seq {seq_len}"

    def examples(self, model: Model, root: Path, field: str, n: int, max_chars: int = 300) -> list[Any]:
        """Up to ``n`` inputs from the test split for cards and Spaces (texts, prompts or uint8 HxWx3 images)."""
        raise NotImplementedError

    def recognises(self, config: dict[str, Any]) -> bool:
        """Whether a folder without provenance (a pulled repo) is this family's, from its config.json."""
        return False

    # ------------------------------------------------------------ the card

    def usage_names(self, node: Any, fmt: str, art: Path | None, root: str | None) -> list[str]:
        """The snippet templates (``usage/<name>.py.j2`` in this folder) for a variant. Default: its format's."""
        return [fmt]

    def snippet_values(self) -> dict[str, Any]:
        """Values the family's snippet templates need beyond the card's (file names it stages, lengths)."""
        return {}

    def adapter_usage_name(self, root: str | None) -> str:
        """The snippet template of a qlora variant's adapter repo (``root``: provenance's "root")."""
        return "adapter"

    def format_tags(self, fmt: str) -> list[str]:
        """Hub tags a format adds to a card."""
        return []

    def card_section(self, loaded: Any, store: Any, node: Any, table: dict[str, Any], fmt: str) -> str:
        """A section of the family's own in a variant's card (Markdown). Default: none."""
        return ""

    def stage_card_files(self, loaded: Any, node: Any, art: Path, out: Path) -> None:
        """Write files the card's snippets need beside the weights into the staged repo ``out``. Default: none."""

    def describe_example(self, loaded: Any, model_id: str) -> str:
        """A real input from the test split for snippets (or :attr:`example_text`, for inputs that are not text)."""
        if self.example_text is not None:
            return self.example_text
        model = loaded.model(model_id)
        return self.examples(model, loaded.root, f"models.{model_id}.dataset", 1)[0]

    # ------------------------------------------------------------ the Space

    def space_spec(self, node: Any, art: Path, prov: dict[str, Any]) -> dict[str, Any]:
        """What the app needs to load one variant, besides repo id, variant and kind."""
        return {"format": prov.get("format")}

    def space_limits(self) -> dict[str, Any]:
        """The app's input limits and queue settings (override ``queue_size`` / ``concurrency`` here)."""
        return {}

    def space_files(self, loaded: Any, model_id: str, out: Path, config: dict[str, Any]) -> None:
        """Write the app's files besides app.py (examples, code it imports) into ``out``; may add to ``config``."""

    def space_requirements(self, specs: list[dict[str, Any]]) -> list[str]:
        """The packages the app imports for the formats among ``specs``."""
        return list(self.space_packages)

    def demo_settings(self, folder: Path) -> dict[str, Any]:
        """Settings for ``zoo.demo_server`` beyond port and body limit (e.g. upload limits)."""
        return {}

    def write_space(self, loaded: Any, store: Any, model_id: str, specs: list, table: dict, left_out: list
                    ) -> Path | None:
        """Write the whole Space folder when the family renders its own; None: the generic renderer does."""
        return None

    # ------------------------------------------------------------ zoo pull

    def load_lines(self, folder: Path, fmt: str | None) -> list[str]:
        """Lines of Python that load a pulled folder of this format."""
        where = json.dumps(str(folder))
        if fmt and fmt.startswith("onnx"):
            return ["import onnxruntime as ort",
                    f'session = ort.InferenceSession({json.dumps(str(folder / "model.onnx"))}, '
                    'providers=["CPUExecutionProvider"])']
        auto = self.auto_class or "AutoModel"
        return [f"from transformers import {auto}", f"model = {auto}.from_pretrained({where})"]



def alternate(by_label: dict[Any, list[Any]], n: int) -> list[Any]:
    """Up to ``n`` items taken from each label's list in turn, so examples cover the classes."""
    out: list[Any] = []
    while len(out) < n and any(by_label.values()):
        for label in list(by_label):
            if by_label[label] and len(out) < n:
                out.append(by_label[label].pop(0))
    return out


def seeded_subset(total: int, samples: int | None, seed: int) -> list[int] | None:
    """Sorted positions of ``samples`` of ``total`` rows chosen with ``seed``; None when every row is kept."""
    if samples is None or samples >= total:
        return None
    return sorted(random.Random(seed).sample(range(total), samples))


def params_from_provenance(artifact_dir: Path) -> int | None:
    value = read_provenance(artifact_dir).get("params_count")
    return int(value) if value else None
