"""fp32: fine-tune the base model on the task (full, or LoRA then merged with peft)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique


class FinetuneParams(Params):
    method: Literal["full", "lora"] = "full"  # lora: train an adapter, then merge it into fp32 weights
    epochs: float = Field(2, gt=0, le=100)
    lr: float = Field(5e-5, gt=0, le=1)
    batch_size: int = Field(16, ge=1, le=4096)
    max_length: int = Field(128, ge=8, le=8192)
    weight_decay: float = Field(0.01, ge=0, le=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    lora_r: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1, le=4096)


class Finetune(Technique):
    name = "finetune"
    kinds = frozenset({Kind.fp32})
    tasks = frozenset({"text-classification"})
    params = FinetuneParams

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from zoo.techniques import _train

        p: FinetuneParams = ctx.params  # type: ignore[assignment]
        threads = _train.set_threads()
        splits = ctx.splits()
        id2label, label2id = _train.label_maps(splits.label_names)
        _train.seed_everything(p.seed)
        remote = ctx.model.trust_remote_code  # off unless the registry entry says so
        tokenizer = AutoTokenizer.from_pretrained(ctx.parent_dir, trust_remote_code=remote)
        model = AutoModelForSequenceClassification.from_pretrained(
            ctx.parent_dir, num_labels=len(id2label), id2label=id2label, label2id=label2id, trust_remote_code=remote)
        if p.method == "lora":
            model = _with_lora(model, p)
        batches = _train.tokenize_batches(tokenizer, splits.train.inputs, splits.train.labels, p.batch_size,
                                          p.max_length, shuffle=True, seed=p.seed)
        ctx.log(f"{ctx.model_id}:{ctx.variant_id}: {p.method} fine-tuning on {len(splits.train)} rows, "
                f"{p.epochs:g} epochs, {threads} threads")
        training = _train.train_loop(model, batches, p.epochs, p.lr, p.weight_decay, p.warmup_ratio,
                                     ctx.progress, f"{ctx.model_id}:{ctx.variant_id} {p.method}")
        if p.method == "lora":
            model = model.merge_and_unload()
        _train.save_with_tokenizer(model, tokenizer, ctx.out_dir)
        return {
            "format": "transformers",
            "dtype": "fp32",
            "label_names": splits.label_names,
            "max_length": p.max_length,
            "params_count": _train.params_count(model),
            "training": {**training, "method": p.method, "rows": len(splits.train), "threads": threads,
                         "data": splits.describe("train")},
        }


def _with_lora(model: Any, p: FinetuneParams) -> Any:
    """Wrap ``model`` in a LoRA adapter on its attention projections; the new classifier head trains fully."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=0.05,
                        target_modules="all-linear")
    return get_peft_model(model, config)
