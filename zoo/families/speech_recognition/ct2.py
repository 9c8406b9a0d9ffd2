"""Turn a CTranslate2 Whisper folder (``model.bin`` + ``config.json`` + ``tokenizer.json``) into a transformers
``WhisperForConditionalGeneration`` checkpoint, once, cached by the sha256 of ``model.bin``.

``model.bin`` is a flat list of named arrays (format version 6). CTranslate2 stacks projections that transformers
keeps apart: self-attention ``linear_0`` is q, k, v (k has no bias in transformers), cross-attention ``linear_0`` is q
and ``linear_1`` is k, v, the last linear is the output projection; the output projection is tied to the embeddings.
The weights are float16 as in OpenAI's checkpoints, so the fp32 copy is exact.
"""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from zoo.errors import ZooError
from zoo.sources import cache_dir, sha256_file
from zoo.store import atomic_dir

MARKER = "ct2.json"  # written last into a converted folder
CONVERTER = 1  # bump when the conversion changes
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def is_ct2_whisper(path: Path) -> bool:
    """True for a folder whose ``model.bin`` is a CTranslate2 WhisperSpec."""
    f = path / "model.bin"
    if not (path.is_dir() and f.is_file()):
        return False
    with open(f, "rb") as fh:
        return b"WhisperSpec" in fh.read(32)


def model_dir(path: Path, log=print) -> Path:
    """A transformers folder for ``path``: itself, or the cached conversion of a CTranslate2 Whisper folder.

    Raises:
        ZooError: neither a transformers folder nor a CTranslate2 Whisper folder.
    """
    if is_ct2_whisper(path):
        return converted(path, log=log)
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise ZooError(f"'{path}' is neither a transformers folder nor a CTranslate2 Whisper folder (model.bin): "
                   "point base.source at one of them")


def converted(src: Path, cache: Path | None = None, log=print) -> Path:
    sha = sha256_file(src / "model.bin")
    final = (cache or cache_dir()) / "converted" / f"ct2-{sha}"
    if (final / MARKER).is_file() and json.loads((final / MARKER).read_text()).get("converter") == CONVERTER:
        return final
    log(f"converting the CTranslate2 Whisper in {src.name} to a transformers checkpoint (once; cached in {final})")
    with atomic_dir(final) as tmp:
        facts = convert(src, tmp)
        (tmp / MARKER).write_text(json.dumps({"model_bin_sha256": sha, "converter": CONVERTER, **facts,
                                              "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                                             indent=2) + "\n")
    return final


def read_model_bin(path: Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """The spec name, the named arrays and the aliases of a CTranslate2 ``model.bin``.

    Raises:
        ZooError: not a CTranslate2 model file of format version 6 or an unknown array type.
    """
    with open(path, "rb") as f:
        def u(fmt: str) -> Any:
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

        def s() -> str:
            return _string(f, u("H"))

        version = u("I")
        if version != 6:
            raise ZooError(f"'{path}': CTranslate2 model format {version}, this converter reads version 6")
        spec = s()
        u("I")  # spec revision
        arrays: dict[str, np.ndarray] = {}
        for _ in range(u("I")):
            name = s()
            dims = [u("I") for _ in range(u("B"))]
            dtype, nbytes = u("B"), u("I")
            if dtype not in _DTYPES:
                raise ZooError(f"'{path}': array {name} has CTranslate2 type {dtype}, which this converter does not "
                               "read (quantized models: convert the float16 one)")
            arrays[name] = np.frombuffer(f.read(nbytes), dtype=_DTYPES[dtype]).reshape(dims)
        aliases = {s(): s() for _ in range(u("I"))}
    return spec, arrays, aliases


def _string(f: BinaryIO, n: int) -> str:
    return f.read(n)[:-1].decode()


def state_dict(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """transformers names for every array, and the shape facts (layers, width, heads, vocabulary) of the model."""
    a = {k: v.astype(np.float32) for k, v in arrays.items() if v.ndim > 0}
    d_model = a["encoder/conv1/weight"].shape[0]
    enc_layers = 1 + max(int(k.split("/")[1].split("_")[1]) for k in a if re.match(r"encoder/layer_\d+/", k))
    dec_layers = 1 + max(int(k.split("/")[1].split("_")[1]) for k in a if re.match(r"decoder/layer_\d+/", k))
    out: dict[str, np.ndarray] = {}

    def ln(src: str, dst: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = a[f"{src}/gamma"], a[f"{src}/beta"]

    def lin(src: str, dst: str, bias: bool = True) -> None:
        out[f"{dst}.weight"] = a[f"{src}/weight"]
        if bias:
            out[f"{dst}.bias"] = a[f"{src}/bias"]

    def qkv(src: str, dst: str) -> None:
        w, b = np.split(a[f"{src}/linear_0/weight"], 3), np.split(a[f"{src}/linear_0/bias"], 3)
        out[f"{dst}.q_proj.weight"], out[f"{dst}.q_proj.bias"] = w[0], b[0]
        out[f"{dst}.k_proj.weight"] = w[1]
        out[f"{dst}.v_proj.weight"], out[f"{dst}.v_proj.bias"] = w[2], b[2]

    for side, n in (("encoder", enc_layers), ("decoder", dec_layers)):
        p = f"model.{side}"
        out[f"{p}.embed_positions.weight"] = a[f"{side}/position_encodings/encodings"]
        ln(f"{side}/layer_norm", f"{p}.layer_norm")
        for i in range(n):
            s, t = f"{side}/layer_{i}", f"{p}.layers.{i}"
            qkv(f"{s}/self_attention", f"{t}.self_attn")
            lin(f"{s}/self_attention/linear_1", f"{t}.self_attn.out_proj")
            ln(f"{s}/self_attention/layer_norm", f"{t}.self_attn_layer_norm")
            lin(f"{s}/ffn/linear_0", f"{t}.fc1")
            lin(f"{s}/ffn/linear_1", f"{t}.fc2")
            ln(f"{s}/ffn/layer_norm", f"{t}.final_layer_norm")
            if side == "decoder":
                lin(f"{s}/attention/linear_0", f"{t}.encoder_attn.q_proj")
                kw, vw = np.split(a[f"{s}/attention/linear_1/weight"], 2)
                _, vb = np.split(a[f"{s}/attention/linear_1/bias"], 2)
                out[f"{t}.encoder_attn.k_proj.weight"] = kw
                out[f"{t}.encoder_attn.v_proj.weight"], out[f"{t}.encoder_attn.v_proj.bias"] = vw, vb
                lin(f"{s}/attention/linear_2", f"{t}.encoder_attn.out_proj")
                ln(f"{s}/attention/layer_norm", f"{t}.encoder_attn_layer_norm")
    for c in ("conv1", "conv2"):
        lin(f"encoder/{c}", f"model.encoder.{c}")
    out["model.decoder.embed_tokens.weight"] = a["decoder/embeddings/weight"]
    heads = int(arrays["encoder/num_heads"].reshape(()))
    shape = {"d_model": d_model, "encoder_layers": enc_layers, "decoder_layers": dec_layers, "heads": heads,
             "vocab_size": a["decoder/embeddings/weight"].shape[0], "num_mel_bins": a["encoder/conv1/weight"].shape[1],
             "ffn": a["encoder/layer_0/ffn/linear_0/weight"].shape[0],
             "max_source_positions": a["encoder/position_encodings/encodings"].shape[0],
             "max_target_positions": a["decoder/position_encodings/encodings"].shape[0]}
    return out, shape


def convert(src: Path, out_dir: Path) -> dict[str, Any]:
    """Write the transformers checkpoint, tokenizer, feature extractor and generation config of ``src``."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    spec, arrays, _ = read_model_bin(src / "model.bin")
    if spec != "WhisperSpec":
        raise ZooError(f"'{src}/model.bin' holds a {spec}, not a WhisperSpec: point base.source at a Whisper model")
    ct2 = json.loads((src / "config.json").read_text())
    weights, shape = state_dict(arrays)
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(src / "tokenizer.json"))
    vocab = shape["vocab_size"]
    english_only = vocab == 51864 or not ct2.get("lang_ids")  # the .en vocabulary is one token shorter
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    cfg = WhisperConfig(
        vocab_size=vocab, num_mel_bins=shape["num_mel_bins"], d_model=shape["d_model"],
        encoder_layers=shape["encoder_layers"], decoder_layers=shape["decoder_layers"],
        encoder_attention_heads=shape["heads"], decoder_attention_heads=shape["heads"],
        encoder_ffn_dim=shape["ffn"], decoder_ffn_dim=shape["ffn"],
        max_source_positions=shape["max_source_positions"], max_target_positions=shape["max_target_positions"],
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        suppress_tokens=ct2.get("suppress_ids"), begin_suppress_tokens=ct2.get("suppress_ids_begin"),
        tie_word_embeddings=True)
    model = WhisperForConditionalGeneration(cfg)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()},
                                                strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise ZooError(f"'{src}/model.bin': arrays do not map onto Whisper (missing {missing[:3]}, "
                       f"unexpected {unexpected[:3]}): the converter needs updating for this model")
    model.tie_weights()
    gen = model.generation_config
    gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id = sot, eot, eot
    gen.suppress_tokens, gen.begin_suppress_tokens = ct2.get("suppress_ids"), ct2.get("suppress_ids_begin")
    gen.alignment_heads = ct2.get("alignment_heads")
    gen.no_timestamps_token_id = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    gen.is_multilingual = not english_only
    gen.max_length = shape["max_target_positions"]
    if not english_only:
        gen.lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in ct2.get("lang_ids", [])}
        gen.task_to_id = {t: tokenizer.convert_tokens_to_ids(f"<|{t}|>") for t in ("transcribe", "translate")}
    model.save_pretrained(out_dir)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=shape["num_mel_bins"]), tokenizer).save_pretrained(out_dir)
    return {"spec": spec, **shape, "english_only": english_only,
            "params_count": sum(p.numel() for p in model.parameters())}
