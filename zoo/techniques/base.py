"""What every technique provides, and what a build hands it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from zoo.registry.schema import Kind

if TYPE_CHECKING:
    from zoo.data import Splits
    from zoo.registry.schema import Model, Target, Variant


class Params(BaseModel):
    """Base of every recipe's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0


@dataclass
class BuildContext:
    """Everything one variant's build needs. The technique writes into ``out_dir`` and nothing else."""

    model_id: str
    variant_id: str
    model: Model
    variant: Variant
    target: Target
    recipe_name: str
    params: Params
    parent_dir: Path  # the parent's artifact folder, or the resolved base model folder for `from: base`
    parent_kind: str  # "base" or the parent variant's kind
    out_dir: Path  # an empty temp folder; renamed into the store when the build succeeds
    splits: Callable[[], Splits]  # loads (once) the dataset split by the model's seed
    progress: Any  # a rich Progress; add tasks with zoo.progress.add(ctx.progress, ...)
    root: Path = Path(".")  # the folder of registry.yaml, which ``file:`` sources are relative to
    log: Callable[[str], None] = print
    extra: dict[str, Any] = field(default_factory=dict)


class Technique:
    """One way to make a variant. Subclasses set the class attributes and implement :meth:`build`.

    Heavy imports (torch, transformers, onnxruntime) belong inside ``build`` so that validating a registry stays fast.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[Kind]]  # variant kinds this technique can build
    tasks: ClassVar[frozenset[str]]  # tasks it supports
    params: ClassVar[type[Params]] = Params
    formats: ClassVar[tuple[str, ...]] = ("transformers",)  # artifact formats it writes (zoo/formats.py)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        """Write the artifact into ``ctx.out_dir`` and return extra provenance (must include ``format``)."""
        raise NotImplementedError
