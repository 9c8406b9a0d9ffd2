"""onnxruntime-genai artifacts (format ``onnx-genai``): build them with its model builder, run them with ONNX Runtime.

The builder (``python -m onnxruntime_genai.models.builder``) writes ``model.onnx`` (+ ``model.onnx.data``) with a KV
cache, ``genai_config.json`` and the tokenizer; int4/int8 weights are MatMulNBits blocks. Generation goes through
``og.Generator``; perplexity needs every position's logits, so it runs the same graph in a plain ONNX Runtime session
with an empty cache.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from zoo.errors import ZooError

PRECISIONS = ("fp32", "int8", "int4")


def build(src: Path, out_dir: Path, precision: str, options: dict[str, Any], cache_dir: Path) -> None:
    """Run the model builder on the transformers folder ``src`` into ``out_dir`` (the builder's output stays in a
    log beside its cache; its last line is kept in the error).

    Raises:
        ZooError: the builder failed or wrote no model.onnx / genai_config.json.
    """
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(out_dir),
           "-p", precision, "-e", "cpu", "-c", str(cache_dir)]
    extra = [f"{k}={v}" for k, v in options.items() if v is not None]
    if extra:
        cmd += ["--extra_options", *extra]
    cache_dir.mkdir(parents=True, exist_ok=True)
    log = cache_dir / "builder.log"
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    if proc.returncode != 0:
        raise ZooError(f"onnxruntime-genai's model builder failed on '{src}' ({precision}): "
                       f"{lines[-1] if lines else f'exit status {proc.returncode}'}")
    missing = [n for n in ("model.onnx", "genai_config.json") if not (out_dir / n).is_file()]
    if missing:
        raise ZooError(f"onnxruntime-genai's model builder wrote no {', '.join(missing)} for '{src}'")
    # the transformers config stays beside genai_config.json: AutoConfig and the zoo's loaders read it
    shutil.copy2(src / "config.json", out_dir / "config.json")


def is_genai(artifact_dir: Path) -> bool:
    return (artifact_dir / "genai_config.json").is_file()


def weight_bits(artifact_dir: Path) -> str:
    """"int4", "int8" or "fp32": the bit width most of the graph's MatMulNBits nodes have (an int4 model may hold
    some MatMuls at int8), if it has any."""
    from collections import Counter

    import onnx

    graph = onnx.load(str(artifact_dir / "model.onnx"), load_external_data=False).graph
    bits = Counter(next((a.i for a in node.attribute if a.name == "bits"), 4)
                   for node in graph.node if node.op_type == "MatMulNBits")
    return f"int{bits.most_common(1)[0][0]}" if bits else "fp32"


def quantized_nodes(artifact_dir: Path, patterns: list[str], field: str) -> list[str]:
    """The builder's names (as ``nodes_to_exclude`` wants them) of the quantized MatMuls matching ``patterns``.

    A MatMulNBits node carries its float MatMul's name plus a suffix (``…/down_proj/MatMul_Q4``); the float name is
    what the builder's exclusion list matches.

    Raises:
        ZooError: a pattern matches no quantized node.
    """
    import fnmatch

    import onnx

    graph = onnx.load(str(artifact_dir / "model.onnx"), load_external_data=False).graph
    names = [n.name.rsplit("_Q", 1)[0] for n in graph.node if n.op_type == "MatMulNBits"]
    out: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ZooError(f"{field}: '{pattern}' matches no quantized node (names look like "
                           f"'{names[len(names) // 2] if names else '(none)'}')")
        out += [h for h in hits if h not in out]
    return out


class GenaiModel:
    """An ``onnx-genai`` folder: ``og.Model`` for generation, an ONNX Runtime session for full-sequence logits."""

    def __init__(self, artifact_dir: Path, threads: int | None = None):
        import onnxruntime as ort
        import onnxruntime_genai as og

        self.dir = artifact_dir
        config = og.Config(str(artifact_dir))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
            options.intra_op_num_threads = threads
        self.og = og
        self.model = og.Model(config)
        self.max_context = int(json.loads((artifact_dir / "genai_config.json").read_text())["model"]
                               .get("context_length") or 2048)
        self._options = options
        self._session: Any = None

    def logits(self, input_ids: Any) -> Any:
        """Logits (numpy, ``B × T × V``) of unpadded rows of token ids, from an empty KV cache."""
        import numpy as np
        import onnxruntime as ort

        if self._session is None:  # only perplexity needs it: generation stays on og's own session
            self._session = ort.InferenceSession(str(self.dir / "model.onnx"), self._options,
                                                 providers=["CPUExecutionProvider"])
        ids = np.asarray(input_ids, dtype=np.int64)
        feed: dict[str, Any] = {}
        for inp in self._session.get_inputs():
            if inp.name == "input_ids":
                feed[inp.name] = ids
            elif inp.name == "attention_mask":
                feed[inp.name] = np.ones_like(ids)
            elif inp.name == "position_ids":
                feed[inp.name] = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy()
            else:  # past_key_values.N.key/value: no past positions
                shape = [ids.shape[0] if d == "batch_size" else d if isinstance(d, int) else 0 for d in inp.shape]
                if not isinstance(inp.shape[-1], int):
                    shape[-1] = self._head_size()
                feed[inp.name] = np.zeros(shape, dtype=np.float16 if "float16" in inp.type else np.float32)
        return self._session.run(["logits"], feed)[0].astype(np.float32)

    def _head_size(self) -> int:
        decoder = json.loads((self.dir / "genai_config.json").read_text())["model"]["decoder"]
        return int(decoder["head_size"])

    def tokens(self, prompt_ids: list[int], max_new_tokens: int):
        """Greedy new token ids, one at a time, until eos or ``max_new_tokens``."""
        og = self.og
        params = og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=min(len(prompt_ids) + max_new_tokens,
                                                                   self.max_context))
        generator = og.Generator(self.model, params)
        generator.append_tokens(prompt_ids)
        while not generator.is_done():
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])


class ForHFLM:
    """A :class:`GenaiModel` as lm-eval's ``HFLM`` calls a transformers causal LM: a forward pass returns ``logits``
    over the whole (right-padded) batch, ``generate`` is greedy decoding through ``og.Generator`` row by row."""

    def __init__(self, model: GenaiModel):
        import torch
        from transformers import AutoConfig

        self._model = model
        self.config = AutoConfig.from_pretrained(model.dir)
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def eval(self) -> ForHFLM:
        return self

    def tie_weights(self) -> None:
        pass

    def __call__(self, input_ids: Any, attention_mask: Any = None, **_: Any) -> Any:
        import torch

        return SimpleNamespace(logits=torch.from_numpy(self._model.logits(input_ids.cpu().numpy())))

    def generate(self, input_ids: Any, attention_mask: Any = None, max_length: int | None = None,
                 pad_token_id: int | None = None, max_new_tokens: int | None = None, **_: Any) -> Any:
        import torch

        width = input_ids.shape[1]
        new_tokens = max_new_tokens if max_new_tokens is not None else max(0, (max_length or width) - width)
        rows = []
        for i in range(input_ids.shape[0]):
            ids = input_ids[i] if attention_mask is None else input_ids[i][attention_mask[i].bool()]
            rows.append(input_ids[i].tolist() + list(self._model.tokens(ids.tolist(), new_tokens)))
        longest = max(len(r) for r in rows)
        pad = pad_token_id if pad_token_id is not None else 0
        return torch.tensor([r + [pad] * (longest - len(r)) for r in rows], dtype=input_ids.dtype)
