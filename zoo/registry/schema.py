"""The schema of ``registry.yaml``: targets, models and their variants. Cross-entry rules live in ``rules.py``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=64)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _known_metric(name: str) -> str:
    from zoo import metrics

    if name not in metrics.METRICS:
        raise ValueError(f"unknown metric '{name}': use one of {', '.join(metrics.METRICS)}")
    return name


Metric = Annotated[str, AfterValidator(_known_metric)]  # a name in zoo.metrics.METRICS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Kind(StrEnum):
    """What a variant is; each technique declares the kinds it can build."""

    fp32 = "fp32"
    w16a16 = "w16a16"
    int8 = "int8"
    int4 = "int4"
    qlora_4bit = "qlora-4bit"
    distilled = "distilled"
    pruned = "pruned"
    qat = "qat"


class Device(StrEnum):
    cpu = "cpu"
    gpu = "gpu"
    npu = "npu"


class License(StrEnum):
    apache_2_0 = "apache-2.0"
    mit = "mit"
    bsd_3_clause = "bsd-3-clause"
    cc_by_4_0 = "cc-by-4.0"
    cc_by_sa_4_0 = "cc-by-sa-4.0"
    cc_by_nc_4_0 = "cc-by-nc-4.0"
    llama3_2 = "llama3.2"
    gemma = "gemma"
    openrail = "openrail"
    other = "other"


class Target(Strict):
    """A piece of hardware a variant is made for; speed is measured only on a machine that matches it."""

    device: Device
    arch: Literal["x86_64", "aarch64", "any"] = "any"  # CPU architecture; "any" for GPUs
    isa: Literal["avx2", "avx512", "avx512-vnni", "amx", "arm64", "neon"] | None = None  # quantization preset
    board: str | None = None  # e.g. "Raspberry Pi 5"
    runtime: Literal["onnxruntime", "torch"] = "onnxruntime"
    dtypes: list[Literal["fp32", "fp16", "bf16", "int8", "int4", "nf4"]] = ["fp32"]  # natively fast dtypes
    # Ray resources a node must offer to count as this target, e.g. {rpi5: 1}; speed is measured on such a node
    resources: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)],
                    Annotated[float, Field(gt=0)]] | None = None


class Source(Strict):
    """Where an asset comes from: ``hub:ORG/NAME@REV``, ``pypi:PKG==VER#path/in/wheel``, ``git:URL@COMMIT``,
    ``github:OWNER/REPO@COMMIT#path`` or ``file:PATH``."""

    source: str  # see zoo/sources.py for the forms
    sha256: Sha256 | None = None  # of the wheel (pypi:) or file (file:); checked before use
    revision: str | None = None  # hub: alternative to @REV in the source

    @field_validator("source")
    @classmethod
    def _form(cls, v: str) -> str:
        from zoo.sources import parse_source

        parse_source(v)  # raises ValueError with the fix
        return v


class Split(Strict):
    """How the rows are split; the same seed gives the same rows everywhere."""

    train: int = Field(1000, ge=1, le=1_000_000)  # rows to train on
    test: int = Field(500, ge=1, le=1_000_000)  # held-out rows for evaluation
    calibration: int = Field(128, ge=1, le=100_000)  # rows for static quantization, taken from train
    seed: int = 0


class Builder(Strict):
    """A family's reader of a dataset source that is not a labelled table, and its options (the family checks them)."""

    name: str
    options: dict[str, Any] = {}


class Dataset(Source):
    """A labelled table (CSV/TSV, optionally .bz2/.gz) or a text file for language modelling."""

    text: str = "text"  # column with the input text
    label: str | None = "label"  # column with the class name; None for text generation
    labels: list[str] | None = None  # class names in order; rows with other labels are dropped
    split: Split = Split()
    license: str | None = None
    builder: Builder | None = None  # a family's reader of this source (e.g. fsdd, fast-detect-gpt), not a table

    @model_validator(mode="after")
    def _labels(self) -> Dataset:
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct")
        if self.labels is not None and len(self.labels) < 2:
            raise ValueError("labels needs at least two classes")
        return self


class Gate(Strict):
    """The accuracy gate: metric of the variant over metric of ``of`` on the same samples must be ≥ min_ratio."""

    min_ratio: float = Field(0.99, gt=0, le=1.5)
    of: str = "parent"  # "parent" or a variant id of the same model
    metric: Metric | None = None  # defaults to the first of evaluation.metrics


class Evaluation(Strict):
    metrics: list[Metric] = Field(min_length=1)
    samples: int | None = Field(None, ge=1, le=1_000_000)  # cap on test rows; None: all of split.test
    seed: int = 0
    batch_size: int = Field(8, ge=1, le=1024)  # batch N for latency
    seq_len: int = Field(128, ge=8, le=8192)
    repeats: int = Field(20, ge=3, le=10_000)
    kfold: int | None = Field(None, ge=2, le=20)
    gate: Gate | None = None

    @property
    def primary(self) -> str:
        """The metric the gate, the family table and `zoo pull --target` compare: the gate's, else the first."""
        return (self.gate.metric if self.gate and self.gate.metric else None) or self.metrics[0]


class Variant(Strict):
    kind: Kind
    from_: str = Field("base", alias="from")  # "base" or another variant id of the same model
    recipe: Id  # a file recipes/<recipe>.yaml
    target: str  # a key of targets
    description: str | None = None
    # the variant this one's gate compares with, instead of evaluation.gate.of (one trained from base, e.g. qlora-4bit,
    # against fp32)
    gate_of: str | None = None


class Model(Strict):
    task: str  # a family's task (zoo.families): a built-in one or one a `families:` folder adds
    license: License
    base: Source
    dataset: Dataset
    evaluation: Evaluation
    variants: dict[Id, Variant] = Field(min_length=1)
    description: str | None = None
    default: bool = True  # False: built only when named, not by a plain `zoo run`
    trust_remote_code: bool = False  # let transformers run code from the base repo; shown in `zoo plan`
    gated: bool = False  # the base is gated on the Hub; derived repos are gated too

    @field_validator("task")
    @classmethod
    def _family(cls, v: str) -> str:
        from zoo.errors import ZooError
        from zoo.families import FAMILIES

        try:
            FAMILIES.get(v)
        except ZooError as e:
            raise ValueError(str(e)) from None
        return v


class Registry(Strict):
    # family folders beyond the built-in ones, relative to registry.yaml; each adds the task its family.py serves
    families: list[str] = []
    org: Id
    targets: dict[Id, Target] = Field(min_length=1)
    models: dict[Id, Model] = Field(min_length=1)
    version: str | None = None  # registry version, used for commit messages and tags
    store: str | None = None  # the store every cluster node sees: a path or an fsspec URI (s3://bucket/prefix)
