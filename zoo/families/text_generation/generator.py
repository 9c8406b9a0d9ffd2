"""Load any causal-LM artifact behind one API: perplexity, generation (optionally streamed) and the task metric.

Formats (``provenance.json`` "format", else recognised by the files):
- ``transformers-causal-lm``: a folder ``AutoModelForCausalLM.from_pretrained`` loads — fp32, bf16, or a
  bitsandbytes 4-bit checkpoint (its config.json carries ``quantization_config``); a qlora artifact whose provenance
  says ``"root": "nf4-base"`` gets its ``adapter/`` applied with peft (a ``"merged"`` root is used as is);
- ``onnx-genai``: onnxruntime-genai's model builder output (fp32/int8/int4 ONNX with KV cache, genai_config.json),
  generated with ``og.Generator`` (:mod:`zoo.families.text_generation.genai`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.families.text_generation import metrics
from zoo.nf4_guard import guard_cpu_kernel

FORMATS = ("transformers-causal-lm", "onnx-genai")


def _provenance(artifact_dir: Path) -> dict[str, Any]:
    prov = artifact_dir / "provenance.json"
    return json.loads(prov.read_text()) if prov.is_file() else {}


def detect_format(artifact_dir: Path) -> str:
    """The artifact's format: provenance's "format", else by its files."""
    if fmt := _provenance(artifact_dir).get("format"):
        return fmt
    return "onnx-genai" if (artifact_dir / "genai_config.json").is_file() else "transformers-causal-lm"


def load_generator(artifact_dir: Path | str, threads: int | None = None) -> Generator:
    """Load the causal LM in ``artifact_dir`` (a built artifact, a pulled repo, or a converted base folder).

    ``threads`` sizes an ONNX Runtime session's intra-op pool (torch's pool is set by the caller).

    Raises:
        ZooError: the folder has no config.json or its provenance names another format.
    """
    artifact_dir = Path(artifact_dir)
    if not (artifact_dir / "config.json").is_file():
        raise ZooError(f"'{artifact_dir}' has no config.json: it is not a causal-LM artifact folder")
    fmt = detect_format(artifact_dir)
    if fmt not in FORMATS:
        raise ZooError(f"'{artifact_dir}' has format '{fmt}', not a causal-LM format ({', '.join(FORMATS)})")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(artifact_dir)
    if fmt == "onnx-genai":
        from zoo.families.text_generation import genai

        model = genai.GenaiModel(artifact_dir, threads)
        return GenaiGenerator(model, tokenizer, fmt, _provenance(artifact_dir).get("dtype")
                              or genai.weight_bits(artifact_dir), "onnxruntime-genai")
    from transformers import AutoModelForCausalLM

    config = json.loads((artifact_dir / "config.json").read_text())
    quant = config.get("quantization_config")
    model = AutoModelForCausalLM.from_pretrained(artifact_dir, dtype="auto", device_map="cpu" if quant else None)
    if quant:
        guard_cpu_kernel(model)
    if _provenance(artifact_dir).get("root") == "nf4-base":  # a qlora artifact whose adapter is not merged
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, artifact_dir / _provenance(artifact_dir).get("adapter", "adapter"))
    model.eval()
    dtype = "nf4" if quant else {"bfloat16": "bf16", "float16": "fp16"}.get(str(model.dtype).split(".")[-1], "fp32")
    return Generator(model, tokenizer, fmt, dtype, "torch")


class Generator:
    """A loaded causal LM: ``model`` is a transformers model with ``generate`` and a logits forward."""

    def __init__(self, model: Any, tokenizer: Any, fmt: str, dtype: str, runtime: str):
        self.model = model
        self.tokenizer = tokenizer
        self.format = fmt
        self.dtype = dtype
        self.runtime = runtime

    def logits(self, input_ids: Any) -> Any:
        """Logits (``1 × T × V``) for one row of token ids, without padding."""
        import torch

        with torch.inference_mode():
            return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits

    def perplexity(self, texts: Sequence[str], max_length: int = 256) -> float:
        """Token-level perplexity of ``texts`` (each truncated to ``max_length`` tokens)."""
        return metrics.perplexity(self.logits, self.tokenizer, texts, max_length)

    def task_metric(self, texts: Sequence[str], samples: int | None = None, max_length: int = 256
                    ) -> dict[str, float | int]:
        """Next-word exact match: the greedy continuation of each text cut before its middle word starts with that word.

        Returns:
            ``{"exact_match": share in [0, 1], "samples": examples scored}``.
        """
        examples = metrics.next_word_examples(texts, samples)
        score = metrics.exact_match(lambda p: self.continue_text(p, 3, max_length), examples)
        return {metrics.TASK_METRIC: score, "samples": len(examples)}

    def continue_text(self, text: str, max_new_tokens: int, max_length: int = 256) -> str:
        """The greedy continuation of raw ``text`` (no chat template), keeping the last ``max_length`` tokens."""
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"][:, -max_length:]
        return self._decode_new(ids, self._generate(ids, max_new_tokens))

    def generate(self, prompt: str, max_new_tokens: int = 64, stream: bool = False, chat: bool | None = None
                 ) -> str | Iterator[str]:
        """Greedy answer to ``prompt``: the whole text, or with ``stream`` a generator of text chunks.

        Args:
            chat: wrap the prompt in the tokenizer's chat template; default: when the tokenizer has one.
        """
        ids = self._prompt_ids(prompt, chat)
        if not stream:
            return self._decode_new(ids, self._generate(ids, max_new_tokens))
        return self._stream(ids, max_new_tokens)

    def _prompt_ids(self, prompt: str, chat: bool | None) -> Any:
        use_chat = bool(getattr(self.tokenizer, "chat_template", None)) if chat is None else chat
        if use_chat:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                      add_generation_prompt=True, return_tensors="pt",
                                                      return_dict=True)["input_ids"]
        return self.tokenizer(prompt, return_tensors="pt")["input_ids"]

    def _generate(self, ids: Any, max_new_tokens: int, **kw: Any) -> Any:
        import torch

        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        with torch.inference_mode():
            return self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=max_new_tokens, pad_token_id=pad, **kw)

    def _decode_new(self, ids: Any, out: Any) -> str:
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def _stream(self, ids: Any, max_new_tokens: int) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                self._generate(ids, max_new_tokens, streamer=streamer)
            except BaseException as e:  # re-raised in the caller's thread below
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from (chunk for chunk in streamer if chunk)
        thread.join()
        if errors:
            raise errors[0]


class GenaiGenerator(Generator):
    """An ``onnx-genai`` artifact: ``model`` is a :class:`zoo.families.text_generation.genai.GenaiModel`."""

    def logits(self, input_ids: Any) -> Any:
        import torch

        return torch.from_numpy(self.model.logits(input_ids.numpy()))

    def _generate(self, ids: Any, max_new_tokens: int, **kw: Any) -> Any:
        import torch

        new = list(self.model.tokens(ids[0].tolist(), max_new_tokens))
        return torch.cat([ids, torch.tensor([new], dtype=ids.dtype)], dim=1)

    def _stream(self, ids: Any, max_new_tokens: int) -> Iterator[str]:
        new: list[int] = []
        said = ""
        for token in self.model.tokens(ids[0].tolist(), max_new_tokens):
            new.append(token)
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if len(text) > len(said) and not text.endswith("\ufffd"):  # wait for a whole UTF-8 character
                yield text[len(said):]
                said = text
