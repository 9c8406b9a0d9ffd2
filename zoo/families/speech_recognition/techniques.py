"""The Whisper techniques, registered by the family's ``techniques()``: LoRA fine-tune (merged), half precision,
ONNX Runtime dynamic int8 (encoder + decoder exported with torch.onnx), QLoRA on an NF4 base, and a distilled decoder
(fewer layers, KD from the teacher)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from zoo.errors import ZooError
from zoo.registry.schema import Kind
from zoo.techniques.base import BuildContext, Params, Technique

ASR = frozenset({"automatic-speech-recognition"})
TRANSFORMERS = "transformers-whisper"
# the decoder's linear layers: the encoder stays frozen, so its outputs are computed once per clip, not per epoch
LORA_TARGETS = r"model\.decoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|encoder_attn\.(q|k|v|out)_proj|fc1|fc2)"
ENCODE_BATCH = 8


class TrainParams(Params):
    epochs: float = Field(1, gt=0, le=100)
    lr: float = Field(1e-4, gt=0, le=1)
    batch_size: int = Field(8, ge=1, le=1024)
    lora_r: int = Field(8, ge=1, le=256)
    lora_alpha: int = Field(16, ge=1, le=1024)


def _parent(ctx: BuildContext) -> Path:
    from zoo.families.speech_recognition.ct2 import model_dir

    return model_dir(ctx.parent_dir, log=ctx.log)


class Batches:
    """Batches of (log-mel features, label ids) over the training clips, shuffled per epoch by seed."""

    def __init__(self, processor: Any, clips: Any, batch_size: int, seed: int, encoder: Any) -> None:
        import numpy as np
        import torch

        if not len(clips):
            raise ZooError("dataset.split.train: no training clips: raise dataset.split.train")
        feats = processor.feature_extractor(clips.audio, sampling_rate=16_000,
                                            return_tensors="np").input_features.astype(np.float32)
        dev = next(encoder.parameters()).device
        with torch.inference_mode():
            self.hidden = torch.cat([encoder(input_features=torch.from_numpy(feats[i : i + ENCODE_BATCH]).to(dev))
                                     .last_hidden_state.float().cpu() for i in range(0, len(feats), ENCODE_BATCH)])
        tok = processor.tokenizer
        prefix = [tok.convert_tokens_to_ids("<|notimestamps|>")]
        eot = tok.convert_tokens_to_ids("<|endoftext|>")
        self.labels = [prefix + tok.encode(" " + t, add_special_tokens=False) + [eot] for t in clips.texts]
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __call__(self, epoch: int = 0):
        import random

        import torch

        order = list(range(len(self.labels)))
        random.Random(self.seed * 100_003 + epoch).shuffle(order)
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            width = max(len(self.labels[i]) for i in idx)
            labels = torch.full((len(idx), width), -100, dtype=torch.long)
            for r, i in enumerate(idx):
                labels[r, : len(self.labels[i])] = torch.tensor(self.labels[i])
            yield {"encoder_outputs": (self.hidden[idx].clone(),), "labels": labels}


def _save(model: Any, processor: Any, out: Path) -> None:
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


class WhisperFinetune(Technique):
    name = "whisper-finetune"
    kinds = frozenset({Kind.fp32})
    tasks = ASR
    params = TrainParams
    formats = (TRANSFORMERS,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        from peft import LoraConfig, get_peft_model
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from zoo.techniques import _train

        p: TrainParams = ctx.params  # type: ignore[assignment]
        threads = _train.set_threads()
        _train.seed_everything(p.seed)
        src = _parent(ctx)
        splits = ctx.splits()
        processor = WhisperProcessor.from_pretrained(src)
        model = WhisperForConditionalGeneration.from_pretrained(src)
        model = get_peft_model(model, LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=0.05,
                                                 target_modules=LORA_TARGETS))
        batches = Batches(processor, splits.train, p.batch_size, p.seed, model.get_encoder())
        ctx.log(f"{ctx.model_id}:{ctx.variant_id}: LoRA fine-tuning on {len(splits.train)} clips, {p.epochs:g} "
                f"epochs, {threads} threads")
        training = _train.train_loop(model, batches, p.epochs, p.lr, 0.0, 0.1, ctx.progress,
                                     f"{ctx.model_id}:{ctx.variant_id} lora")
        model = model.merge_and_unload()
        _save(model, processor, ctx.out_dir)
        return {"format": TRANSFORMERS, "dtype": "fp32", "params_count": _count(model),
                "training": {**training, "method": "lora", "rows": len(splits.train), "threads": threads,
                             "data": splits.describe("train")}}


class HalfParams(Params):
    dtype: Literal["fp16", "bf16"] = "fp16"


class WhisperHalf(Technique):
    name = "whisper-half"
    kinds = frozenset({Kind.w16a16})
    tasks = ASR
    params = HalfParams
    formats = (TRANSFORMERS,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        p: HalfParams = ctx.params  # type: ignore[assignment]
        src = _parent(ctx)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[p.dtype]
        model = WhisperForConditionalGeneration.from_pretrained(src, dtype=dtype)
        _save(model, WhisperProcessor.from_pretrained(src), ctx.out_dir)
        return {"format": TRANSFORMERS, "dtype": p.dtype, "params_count": _count(model)}


class Int8Params(Params):
    quantize_decoder: bool = True  # False keeps the decoder graph fp32 (where int8 costs accuracy)
    per_channel: bool = True
    opset: int = Field(18, ge=14, le=21)


class WhisperInt8(Technique):
    name = "whisper-onnx-int8"
    kinds = frozenset({Kind.int8})
    tasks = ASR
    params = Int8Params
    formats = ("onnx-whisper",)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from zoo.families.speech_recognition.runtime import ONNX_FILES

        p: Int8Params = ctx.params  # type: ignore[assignment]
        src = _parent(ctx)
        model = WhisperForConditionalGeneration.from_pretrained(src, attn_implementation="eager").eval()
        tmp = ctx.out_dir / "fp32"
        tmp.mkdir()
        mels, width = model.config.num_mel_bins, 2 * model.config.max_source_positions
        feats = torch.zeros(1, mels, width)
        encoder, decoder = _EncoderOnly(model), _DecoderOnly(model)
        try:
            _export_pair(encoder, decoder, feats, model.generation_config.decoder_start_token_id, tmp, p.opset)
        except Exception as e:  # the exporter raises many types; keep its first line
            raise ZooError(f"ONNX export of the Whisper in '{src}' failed: "
                           f"{str(e).splitlines()[0] if str(e) else e!r}") from e
        quantized = [ONNX_FILES[0]] + ([ONNX_FILES[1]] if p.quantize_decoder else [])
        for name in ONNX_FILES:
            if name in quantized:
                quantize_dynamic(tmp / name, ctx.out_dir / name, weight_type=QuantType.QInt8,
                                 per_channel=p.per_channel, op_types_to_quantize=["MatMul", "Gemm"])
            else:
                shutil.move(tmp / name, ctx.out_dir / name)
        shutil.rmtree(tmp)
        processor = WhisperProcessor.from_pretrained(src)
        processor.save_pretrained(ctx.out_dir)
        model.generation_config.save_pretrained(ctx.out_dir)
        model.config.save_pretrained(ctx.out_dir)
        return {"format": "onnx-whisper", "dtype": "int8", "params_count": _count(model),
                "quantized_graphs": quantized, "quantization": "onnxruntime dynamic int8 (MatMul/Gemm weights)"}


def _export_pair(encoder: Any, decoder: Any, feats: Any, start_id: int, tmp: Path, opset: int) -> None:
    import torch

    from zoo.families.speech_recognition.runtime import ONNX_FILES

    with torch.inference_mode():
        hidden = encoder(feats)
        torch.onnx.export(encoder, (feats,), tmp / ONNX_FILES[0], input_names=["input_features"],
                          output_names=["last_hidden_state"], dynamic_axes={"input_features": {0: "batch"}},
                          opset_version=opset, dynamo=False)
        ids = torch.tensor([[start_id] * 2])
        torch.onnx.export(decoder, (ids, hidden), tmp / ONNX_FILES[1],
                          input_names=["input_ids", "encoder_hidden_states"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "encoder_hidden_states": {0: "batch"}},
                          opset_version=opset, dynamo=False)


class _EncoderOnly:
    def __new__(cls, model: Any) -> Any:
        import torch

        class Enc(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = model.model.encoder

            def forward(self, input_features):
                return self.encoder(input_features=input_features).last_hidden_state

        return Enc().eval()


class _DecoderOnly:
    def __new__(cls, model: Any) -> Any:
        import torch

        class Dec(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.decoder, self.proj = model.model.decoder, model.proj_out

            def forward(self, input_ids, encoder_hidden_states):
                # an explicit mask keeps transformers off its packed-sequence check (torch.diff, which ONNX lacks)
                out = self.decoder(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                   encoder_hidden_states=encoder_hidden_states, use_cache=False)
                return self.proj(out.last_hidden_state)

        return Dec().eval()


class QloraParams(TrainParams):
    double_quant: bool = True


class WhisperQlora(Technique):
    name = "whisper-qlora-nf4"
    kinds = frozenset({Kind.qlora_4bit})
    tasks = ASR
    params = QloraParams
    formats = (TRANSFORMERS,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import torch
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig, WhisperForConditionalGeneration, WhisperProcessor

        from zoo.nf4_guard import guard_cpu_kernel
        from zoo.techniques import _train

        p: QloraParams = ctx.params  # type: ignore[assignment]
        threads = _train.set_threads()
        _train.seed_everything(p.seed)
        src = _parent(ctx)
        splits = ctx.splits()
        processor = WhisperProcessor.from_pretrained(src)
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                                 bnb_4bit_use_double_quant=p.double_quant,
                                 llm_int8_skip_modules=["proj_out", "conv1", "conv2"])
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = WhisperForConditionalGeneration.from_pretrained(src, quantization_config=bnb, device_map=device)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = get_peft_model(model, LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=0.05,
                                                 target_modules=LORA_TARGETS))
        guard_cpu_kernel(model)
        batches = Batches(processor, splits.train, p.batch_size, p.seed, model.get_encoder())
        ctx.log(f"{ctx.model_id}:{ctx.variant_id}: QLoRA (NF4, r={p.lora_r}) on {len(splits.train)} clips, "
                f"{p.epochs:g} epochs, {threads} threads")

        def loss(m: Any, batch: dict[str, Any]) -> Any:
            return m(encoder_outputs=(batch["encoder_outputs"][0].to(device),),
                     labels=batch["labels"].to(device)).loss

        training = _train.train_loop(model, batches, p.epochs, p.lr, 0.0, 0.1, ctx.progress,
                                     f"{ctx.model_id}:{ctx.variant_id} qlora", loss_fn=loss)
        model.save_pretrained(ctx.out_dir / "adapter")
        (ctx.out_dir / "adapter" / "README.md").unlink(missing_ok=True)
        merged = model.merge_and_unload()
        merged.save_pretrained(ctx.out_dir)
        processor.save_pretrained(ctx.out_dir)
        return {"format": TRANSFORMERS, "dtype": "nf4", "quantization": "bnb-nf4", "adapter": "adapter",
                "params_count": sum(q.numel() * (2 if q.__class__.__name__ == "Params4bit" else 1)
                                    for q in merged.parameters()),
                "training": {**training, "rows": len(splits.train), "threads": threads, "device": device,
                             "data": splits.describe("train")}}


class DistillParams(TrainParams):
    keep_decoder_layers: list[int] = Field(min_length=1)  # teacher decoder layers the student starts from
    temperature: float = Field(2.0, gt=0, le=20)
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the KL term; 1 - alpha on the label cross-entropy
    lr: float = Field(3e-4, gt=0, le=1)


class WhisperDistill(Technique):
    """distil-whisper's recipe at small scale: the encoder copied and frozen, the decoder cut to a few of the
    teacher's layers, trained on the teacher's soft labels plus the references."""

    name = "whisper-distill"
    kinds = frozenset({Kind.distilled})
    tasks = ASR
    params = DistillParams
    formats = (TRANSFORMERS,)

    def build(self, ctx: BuildContext) -> dict[str, Any]:
        import copy

        import torch
        import torch.nn.functional as F
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from zoo.techniques import _train

        p: DistillParams = ctx.params  # type: ignore[assignment]
        threads = _train.set_threads()
        _train.seed_everything(p.seed)
        src = _parent(ctx)
        splits = ctx.splits()
        processor = WhisperProcessor.from_pretrained(src)
        teacher = WhisperForConditionalGeneration.from_pretrained(src).eval()
        n = teacher.config.decoder_layers
        if bad := [i for i in p.keep_decoder_layers if not 0 <= i < n]:
            raise ZooError(f"recipes/{ctx.recipe_name}.yaml: keep_decoder_layers {bad} are not layers of the "
                           f"{n}-layer teacher decoder: use 0..{n - 1}")
        student = copy.deepcopy(teacher)
        student.model.decoder.layers = torch.nn.ModuleList(
            [student.model.decoder.layers[i] for i in p.keep_decoder_layers])
        student.config.decoder_layers = len(p.keep_decoder_layers)
        for i, layer in enumerate(student.model.decoder.layers):
            for mod in layer.modules():
                if hasattr(mod, "layer_idx"):
                    mod.layer_idx = i
        for param in student.model.encoder.parameters():
            param.requires_grad = False
        batches = Batches(processor, splits.train, p.batch_size, p.seed, teacher.get_encoder())
        t = p.temperature

        def loss(m: Any, batch: dict[str, Any]) -> Any:
            out = m(**batch)
            with torch.no_grad():
                soft = teacher(**batch).logits
            mask = batch["labels"] != -100
            kl = F.kl_div(F.log_softmax(out.logits[mask] / t, -1), F.softmax(soft[mask] / t, -1),
                          reduction="batchmean") * t * t
            return p.alpha * kl + (1 - p.alpha) * out.loss

        ctx.log(f"{ctx.model_id}:{ctx.variant_id}: distilling a {len(p.keep_decoder_layers)}-of-{n}-layer decoder "
                f"on {len(splits.train)} clips, {p.epochs:g} epochs, {threads} threads")
        training = _train.train_loop(student, batches, p.epochs, p.lr, 0.0, 0.1, ctx.progress,
                                     f"{ctx.model_id}:{ctx.variant_id} distill", loss_fn=loss)
        _save(student, processor, ctx.out_dir)
        return {"format": TRANSFORMERS, "dtype": "fp32", "params_count": _count(student),
                "student": {"decoder_layers": p.keep_decoder_layers, "of": n},
                "training": {**training, "rows": len(splits.train), "threads": threads,
                             "data": splits.describe("train")}}


TECHNIQUES = [WhisperFinetune(), WhisperHalf(), WhisperInt8(), WhisperQlora(), WhisperDistill()]
