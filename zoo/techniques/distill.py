"""distilled: a smaller student, initialised from the teacher's layers, trained on softened teacher logits + labels."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from zoo.errors import ZooError
from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique


class DistillParams(Params):
    student_layers: int = Field(3, ge=1, le=128)  # layers kept, spread evenly over the teacher's
    temperature: float = Field(2.0, gt=0, le=100)
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the KL term; 1 - alpha on cross-entropy
    epochs: float = Field(2, gt=0, le=100)
    lr: float = Field(1e-4, gt=0, le=1)
    batch_size: int = Field(16, ge=1, le=4096)
    max_length: int = Field(128, ge=8, le=8192)
    weight_decay: float = Field(0.01, ge=0, le=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)


class Distill(Technique):
    name = "distill-kd"
    kinds = frozenset({Kind.distilled})
    tasks = frozenset({"text-classification"})
    params = DistillParams

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from zoo.techniques import _train

        p: DistillParams = ctx.params  # type: ignore[assignment]
        if ctx.parent_kind == "base":
            raise ZooError(f"models.{ctx.model_id}.variants.{ctx.variant_id}.from: a distilled student needs a "
                           "fine-tuned teacher, not the base model: set from: fp32")
        threads = _train.set_threads()
        splits = ctx.splits()
        _train.label_maps(splits.label_names)
        tokenizer = AutoTokenizer.from_pretrained(ctx.parent_dir)
        teacher = AutoModelForSequenceClassification.from_pretrained(ctx.parent_dir, dtype=torch.float32).eval()
        teacher_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
        if teacher_labels != list(splits.label_names or []):
            raise ZooError(f"models.{ctx.model_id}.variants.{ctx.variant_id}.from: the teacher's labels "
                           f"{teacher_labels} differ from dataset.labels {splits.label_names}: rebuild the teacher")
        kept = spread_layers(teacher.config.num_hidden_layers, p.student_layers)
        _train.seed_everything(p.seed)
        student = make_student(teacher, kept)
        batches = _train.tokenize_batches(tokenizer, splits.train.inputs, splits.train.labels, p.batch_size,
                                          p.max_length, shuffle=True, seed=p.seed)
        ctx.log(f"{ctx.model_id}:{ctx.variant_id}: distilling {teacher.config.num_hidden_layers} → {len(kept)} "
                f"layers (kept {kept}) on {len(splits.train)} rows, {p.epochs:g} epochs, {threads} threads")
        training = _train.train_loop(student, batches, p.epochs, p.lr, p.weight_decay, p.warmup_ratio,
                                     ctx.progress, f"{ctx.model_id}:{ctx.variant_id} distill",
                                     loss_fn=kd_loss_fn(teacher, p.temperature, p.alpha))
        _train.save_with_tokenizer(student, tokenizer, ctx.out_dir)
        return {
            "format": "transformers",
            "dtype": "fp32",
            "label_names": splits.label_names,
            "max_length": p.max_length,
            "params_count": _train.params_count(student),
            "teacher": {"variant": ctx.variant.from_, "hash": _teacher_hash(ctx),
                        "layers": teacher.config.num_hidden_layers, "layers_kept": kept,
                        "params_count": _train.params_count(teacher)},
            "student_layers": len(kept),
            "temperature": p.temperature,
            "alpha": p.alpha,
            "training": {**training, "loss": "alpha*T^2*KL(teacher||student) + (1-alpha)*CE",
                         "rows": len(splits.train), "threads": threads, "data": splits.describe("train")},
        }


def spread_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Indices of ``student_layers`` teacher layers spread evenly from the first (6 → 3 keeps 0, 2, 4).

    Raises:
        ZooError: the student would have more layers than the teacher.
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ZooError(f"recipe student_layers: {student_layers} is not between 1 and the teacher's "
                       f"{teacher_layers} layers: lower it")
    return [i * teacher_layers // student_layers for i in range(student_layers)]


def teacher_layers(model: Any) -> Any:
    """The model's stack of transformer layers: the ModuleList with ``config.num_hidden_layers`` entries."""
    import torch

    n = model.config.num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ZooError(f"distill-kd: no list of {n} layers in {type(model).__name__}: this architecture is not "
                   "supported yet")


def _layer_prefix(model: Any) -> str:
    stack = teacher_layers(model)
    return next(name for name, module in model.named_modules() if module is stack)


def make_student(teacher: Any, kept: list[int]) -> Any:
    """A copy of ``teacher`` with only the layers ``kept`` (in order); every other weight is copied as is."""
    import copy

    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(kept)
    student = type(teacher)(config)
    prefix = _layer_prefix(teacher) + "."
    source = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            key_in_teacher = f"{prefix}{kept[int(index)]}.{rest}"
        else:
            key_in_teacher = key
        state[key] = source[key_in_teacher].detach().clone()
    student.load_state_dict(state, strict=True)
    return student


def kd_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float, alpha: float) -> Any:
    """Hinton's distillation loss: ``alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``.

    The T² factor keeps the soft term's gradients on the scale of the hard term's as T changes.
    """
    import torch.nn.functional as F  # noqa: N812

    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * t * t * soft + (1 - alpha) * hard


def kd_loss_fn(teacher: Any, temperature: float, alpha: float):
    """A ``loss_fn(student, batch)`` for the shared train loop, with the teacher frozen in eval mode."""
    import torch

    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)

    def loss(student: Any, batch: dict[str, Any]) -> Any:
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            teacher_logits = teacher(**inputs).logits
        return kd_loss(student(**inputs).logits, teacher_logits, labels, temperature, alpha)

    return loss


def _teacher_hash(ctx: BuildContext) -> str | None:
    path = ctx.parent_dir / "provenance.json"
    try:
        return json.loads(path.read_text()).get("hash")
    except (OSError, json.JSONDecodeError) as e:
        raise ZooError(f"{path}: cannot read the teacher's provenance ({e}): rebuild "
                       f"{ctx.model_id}:{ctx.variant.from_}") from None
