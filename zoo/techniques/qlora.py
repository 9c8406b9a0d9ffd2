"""qlora-4bit: a bitsandbytes NF4 base plus a LoRA adapter trained with peft; the adapter and a merged 4-bit model.

The root is the adapter merged into the fp32 base and quantized once to NF4, saved with its ``quantization_config``
(what ``from_pretrained(repo)`` loads); ``adapter/`` is the LoRA adapter (and trained head) for the upstream base
quantized to NF4 on load. bitsandbytes quantizes only ``nn.Linear`` layers through transformers: the embeddings
(half of MiniLM's weights), norms and head are stored in ``storage_dtype``. bitsandbytes' 4-bit embedding modules
exist, but transformers' from_pretrained neither creates nor loads them, so a checkpoint with them would not load.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from zoo.errors import ZooError
from zoo.nf4_guard import guard_cpu_kernel
from zoo.registry.schema import Kind
from zoo.techniques._nf4 import ADAPTER_DIR, cast_unquantized
from zoo.techniques._nf4 import TORCH_DTYPES as DTYPES
from zoo.techniques.base import BuildContext, Params, Technique

HEAD_NAMES = ("classifier", "score")  # sequence-classification heads across transformers architectures
UNQUANTIZED = ("transformers' bitsandbytes integration quantizes nn.Linear layers only; embeddings, norms and the "
               "classification head are kept in {dtype}")


class QloraParams(Params):
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1, le=4096)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    epochs: float = Field(1, gt=0, le=100)
    lr: float = Field(2e-4, gt=0, le=1)
    batch_size: int = Field(16, ge=1, le=4096)
    max_length: int = Field(128, ge=8, le=8192)
    double_quant: bool = True
    compute_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    # the dtype of the weights NF4 does not cover (embeddings, norms, head) in the published root
    storage_dtype: Literal["fp32", "bf16", "fp16"] = "bf16"
    backend: Literal["auto", "peft", "unsloth"] = "auto"  # auto: unsloth when CUDA and unsloth are present
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    gradient_checkpointing: bool = False  # trades compute for memory; only worth it for large models on a GPU
    min_merge_agreement: float = Field(0.9, ge=0, le=1)  # merged 4-bit vs adapter predictions, on calibration rows


class Qlora(Technique):
    name = "qlora-nf4"
    kinds = frozenset({Kind.qlora_4bit})
    tasks = frozenset({"text-classification"})
    params = QloraParams
    formats = ("bnb-4bit",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch
        from transformers import AutoTokenizer

        from zoo.techniques import _train

        p: QloraParams = ctx.params  # type: ignore[assignment]
        threads = _train.set_threads()
        splits = ctx.splits()
        id2label, label2id = _train.label_maps(splits.label_names)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        _train.seed_everything(p.seed)
        tokenizer = AutoTokenizer.from_pretrained(ctx.parent_dir, trust_remote_code=ctx.model.trust_remote_code)
        model, backend, reason = trainable_model(ctx, p, id2label, label2id, device)
        batches = _train.tokenize_batches(tokenizer, splits.train.inputs, splits.train.labels, p.batch_size,
                                          p.max_length, shuffle=True, seed=p.seed)
        ctx.log(f"{ctx.model_id}:{ctx.variant_id}: QLoRA (NF4, r={p.r}) on {len(splits.train)} rows, {p.epochs:g} "
                f"epochs, backend {backend} ({reason}), {threads} threads")
        training = _train.train_loop(model, batches, p.epochs, p.lr, p.weight_decay, p.warmup_ratio, ctx.progress,
                                     f"{ctx.model_id}:{ctx.variant_id} qlora", loss_fn=_loss_on(device),
                                     max_grad_norm=1.0)
        adapter_dir = ctx.out_dir / ADAPTER_DIR
        model.save_pretrained(adapter_dir)
        _set_adapter_base(adapter_dir, _base_name(ctx))
        (adapter_dir / "README.md").unlink(missing_ok=True)  # peft's stub card; the card stage writes the real one
        check_rows = splits.calibration.inputs
        adapter_logits = logits(model, tokenizer, check_rows, p.max_length, device)
        del model
        merged_params = merge_to_4bit(ctx.parent_dir, adapter_dir, ctx.out_dir, quantization_config(p), id2label,
                                      label2id, trust_remote_code=ctx.model.trust_remote_code,
                                      storage_dtype=p.storage_dtype)
        tokenizer.save_pretrained(ctx.out_dir)
        check = compare_merged(ctx.out_dir, adapter_logits, check_rows, tokenizer, p.max_length)
        if check["agreement"] < p.min_merge_agreement:
            raise ZooError(f"recipes/{ctx.recipe_name}.yaml: the merged 4-bit model agrees with the adapter on only "
                           f"{check['agreement']:.0%} of {check['rows']} rows (min_merge_agreement "
                           f"{p.min_merge_agreement}): train longer or lower lr")
        return {
            "format": "transformers",
            "dtype": "nf4",
            "quantization": "bnb-nf4",
            "quantization_config": {"quant_type": "nf4", "double_quant": p.double_quant,
                                    "compute_dtype": DTYPES[p.compute_dtype]},
            "storage_dtype": p.storage_dtype,
            "unquantized": UNQUANTIZED.format(dtype=p.storage_dtype),
            "adapter": ADAPTER_DIR,
            "backend": backend,
            "backend_reason": reason,
            "label_names": splits.label_names,
            "max_length": p.max_length,
            "params_count": merged_params,
            "merge_check": {**check, "data": splits.describe("calibration")},
            "training": {**training, "rows": len(splits.train), "threads": threads, "device": device,
                         "data": splits.describe("train")},
        }


def trainable_model(ctx: BuildContext, p: QloraParams, id2label: dict, label2id: dict, device: str
                    ) -> tuple[Any, str, str]:
    """The NF4 base wrapped with LoRA, from the backend :func:`choose_backend` picks; ``(model, backend, why)``."""
    backend, reason = choose_backend(p.backend)
    model = None
    if backend == "unsloth":
        try:
            model = _unsloth_model(ctx.parent_dir, p, id2label, label2id)
        except (NotImplementedError, ValueError, TypeError, RuntimeError, AssertionError, KeyError) as e:
            # unsloth covers fewer architectures than peft; the reason is kept in provenance
            backend, reason = "peft", f"unsloth cannot train this model: {str(e).splitlines()[0][:200]}"
            ctx.log(f"{ctx.model_id}:{ctx.variant_id}: {reason}; using peft")
    if model is None:
        model = _peft_model(ctx.parent_dir, p, id2label, label2id, device, ctx.model.trust_remote_code)
    guard_cpu_kernel(model)
    return model, backend, reason


def choose_backend(requested: str) -> tuple[str, str]:
    """Pick the training backend and say why: unsloth only with CUDA and the package present, else peft.

    Raises:
        ZooError: the recipe asks for unsloth where it cannot run.
    """
    import torch

    cuda = torch.cuda.is_available()
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == "peft":
        return "peft", "backend: peft in the recipe"
    if requested == "unsloth" and not (cuda and has_unsloth):
        missing = "CUDA" if not cuda else "the unsloth package"
        raise ZooError(f"recipe backend: unsloth needs CUDA and the unsloth package, and {missing} is missing here: "
                       "set backend: auto or peft")
    if not cuda:
        return "peft", "no CUDA"
    if not has_unsloth:
        return "peft", "unsloth not installed"
    return "unsloth", "CUDA and unsloth present"


def quantization_config(p: QloraParams) -> Any:
    """The bitsandbytes NF4 config used for training and for the merged checkpoint."""
    import torch
    from transformers import BitsAndBytesConfig

    # the head stays out of NF4: transformers 5 quantizes it otherwise (and then LoRA cannot train it, and the
    # AVX512-BF16 CPU kernel cannot pack its 2-wide output)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=p.double_quant,
                              bnb_4bit_compute_dtype=getattr(torch, DTYPES[p.compute_dtype]),
                              llm_int8_skip_modules=list(HEAD_NAMES))


def head_modules(model: Any) -> list[str]:
    """Names of the classification head modules present in ``model`` (trained fully and saved with the adapter)."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    heads = [h for h in HEAD_NAMES if h in names]
    if not heads:
        raise ZooError(f"qlora-nf4: no classification head named {' or '.join(HEAD_NAMES)} in "
                       f"{type(model).__name__}: this architecture is not supported yet")
    return heads


def _peft_model(base: Path, p: QloraParams, id2label: dict, label2id: dict, device: str,
                trust_remote_code: bool = False) -> Any:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(id2label), id2label=id2label, label2id=label2id,
        quantization_config=quantization_config(p), device_map={"": device}, dtype=torch.float32,
        trust_remote_code=trust_remote_code)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=p.gradient_checkpointing)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout,
                        target_modules=p.target_modules, modules_to_save=head_modules(model))
    return get_peft_model(model, config)


def _unsloth_model(base: Path, p: QloraParams, id2label: dict, label2id: dict) -> Any:
    """The same NF4 + LoRA model through unsloth's FastModel (CUDA only; its kernels are faster there).

    unsloth builds its own NF4 config (double quantization on); the merged checkpoint still uses the recipe's.
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from unsloth import FastModel

    model, _ = FastModel.from_pretrained(
        model_name=str(base), auto_model=AutoModelForSequenceClassification, max_seq_length=p.max_length,
        num_labels=len(id2label), id2label=id2label, label2id=label2id, load_in_4bit=True, full_finetuning=False,
        dtype=getattr(torch, DTYPES[p.compute_dtype]))
    targets = None if p.target_modules == "all-linear" else list(p.target_modules)  # None: unsloth's own choice
    return FastModel.get_peft_model(
        model, r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=targets,
        modules_to_save=head_modules(model), random_state=p.seed, task_type="SEQ_CLS",
        use_gradient_checkpointing="unsloth" if p.gradient_checkpointing else False)


def _loss_on(device: str):
    def loss(model: Any, batch: dict[str, Any]) -> Any:
        return model(**{k: v.to(device) for k, v in batch.items()}).loss

    return loss


def logits(model: Any, tokenizer: Any, texts: list[str], max_length: int, device: str = "cpu") -> Any:
    """Logits (float32, on CPU) of a sequence classifier for ``texts``, in order."""
    import torch

    from zoo.techniques._train import Batches

    model.eval()
    out = []
    with torch.inference_mode():
        for batch in Batches(tokenizer, texts, None, 32, max_length, shuffle=False)(0):
            out.append(model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu())
    return torch.cat(out)


def merge_to_4bit(base: Path, adapter_dir: Path, out_dir: Path, qconfig: Any, id2label: dict, label2id: dict,
                  trust_remote_code: bool = False, storage_dtype: str = "fp32") -> int:
    """Merge the adapter into the fp32 base, then quantize the merged weights to NF4 and save them in ``out_dir``
    (the weights NF4 leaves alone in ``storage_dtype``).

    Merging into the full-precision weights and quantizing once keeps the low-rank update, which merging into the
    already-quantized weights mostly rounds away. Returns the merged model's parameter count.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from zoo.techniques._train import params_count

    full = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(id2label), id2label=id2label, label2id=label2id, dtype=torch.float32,
        trust_remote_code=trust_remote_code)
    merged = PeftModel.from_pretrained(full, adapter_dir).merge_and_unload()
    count = params_count(merged)
    with tempfile.TemporaryDirectory(prefix="zoo-qlora-merge-") as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        del full, merged
        quantized = AutoModelForSequenceClassification.from_pretrained(
            tmp, quantization_config=qconfig, device_map={"": "cpu"}, dtype=torch.float32)
        cast_unquantized(quantized, storage_dtype)
        quantized.save_pretrained(out_dir, safe_serialization=True)
    return count


def compare_merged(out_dir: Path, adapter_logits: Any, texts: list[str], tokenizer: Any, max_length: int
                   ) -> dict[str, Any]:
    """Reload the merged 4-bit checkpoint from ``out_dir`` as a user would and compare it with the adapter model."""
    from transformers import AutoModelForSequenceClassification

    # the dtype config.json names, as a user's from_pretrained(repo) loads it
    model = AutoModelForSequenceClassification.from_pretrained(out_dir, device_map={"": "cpu"})
    guard_cpu_kernel(model)
    merged = logits(model, tokenizer, texts, max_length)
    agree = (merged.argmax(-1) == adapter_logits.argmax(-1)).float().mean().item()
    return {"rows": len(texts), "agreement": round(agree, 4),
            "max_abs_logit_diff": round((merged - adapter_logits).abs().max().item(), 4)}


def _set_adapter_base(adapter_dir: Path, name: str) -> None:
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = name
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _base_name(ctx: BuildContext) -> str:
    """What adapter_config.json names as its base: the Hub repo id when the base comes from the Hub, else the source.

    A local cache path would be meaningless on any other machine.
    """
    from zoo.sources import parse_source

    src = parse_source(ctx.model.base.source)
    return src.name if src.scheme == "hub" else ctx.model.base.source

