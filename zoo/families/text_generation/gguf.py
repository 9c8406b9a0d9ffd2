"""Turn a GGUF file (llama.cpp's format) into a normal transformers checkpoint folder, once, cached by its sha256.

transformers dequantizes a GGUF into an fp32 model but refuses to ``save_pretrained`` it, so the weights are moved
into a model built from the same config and saved from there, together with the tokenizer read from the GGUF.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.sources import cache_dir, sha256_file
from zoo.store import atomic_dir

MARKER = "gguf.json"  # written last into a converted folder: names the GGUF it came from
CONVERTER = 2  # bump when the conversion changes, so cached folders are converted again


def is_gguf(path: Path) -> bool:
    """True for a ``.gguf`` file (a base whose source points at one)."""
    return path.is_file() and path.suffix.lower() == ".gguf"


def model_dir(path: Path, log=print) -> Path:
    """A transformers folder for ``path``: the folder itself, or the cached conversion of a ``.gguf`` file.

    Raises:
        ZooError: the path is neither a folder with config.json nor a GGUF file, or the conversion failed.
    """
    if is_gguf(path):
        return converted(path, log=log)
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise ZooError(f"'{path}' is neither a transformers folder (config.json) nor a .gguf file: "
                   "point base.source at one of them")


def converted(gguf_path: Path, cache: Path | None = None, log=print) -> Path:
    """The converted folder of ``gguf_path`` under ``<cache>/converted/<sha256>/``, converting it on first use."""
    sha = sha256_file(gguf_path)
    final = (cache or cache_dir()) / "converted" / sha
    if (final / MARKER).is_file() and json.loads((final / MARKER).read_text()).get("converter") == CONVERTER:
        return final
    log(f"converting {gguf_path.name} to a transformers checkpoint (once; cached in {final})")
    with atomic_dir(final) as tmp:
        facts = convert(gguf_path, tmp)
        record = {"gguf": gguf_path.name, "sha256": sha, "converter": CONVERTER, **facts}
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return final


def convert(gguf_path: Path, out_dir: Path) -> dict[str, Any]:
    """Dequantize ``gguf_path`` to fp32 and save model, config, generation config and tokenizer into ``out_dir``.

    Returns:
        ``{"params_count", "architecture", "seconds"}``.

    Raises:
        ZooError: transformers cannot read the file (the message keeps its first line).
    """
    from transformers import AutoTokenizer

    start = time.perf_counter()
    try:
        loaded = _load(gguf_path)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except (ValueError, OSError, KeyError, RuntimeError) as e:
        raise ZooError(f"'{gguf_path.name}': transformers cannot read this GGUF ({str(e).splitlines()[0]}): "
                       "check the file and that the 'gguf' package is installed") from e
    special = fix_special_tokens(tokenizer, read_tokenizer_metadata(gguf_path))
    model = rebuild(loaded)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {"params_count": sum(p.numel() for p in model.parameters()), "architecture": type(model).__name__,
            "special_tokens": special, "seconds": round(time.perf_counter() - start, 1)}


SPECIAL_IDS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
               "pad_token": "padding_token_id"}


def read_tokenizer_metadata(gguf_path: Path) -> dict[str, Any]:
    """The GGUF's ``tokenizer.ggml.*`` scalars (special token ids, add_bos_token …), without the vocabulary."""
    from gguf import GGUFReader

    out = {}
    for key, field in GGUFReader(gguf_path).fields.items():
        name = key.removeprefix("tokenizer.ggml.")
        if name != key and name in {*SPECIAL_IDS.values(), "add_bos_token", "add_eos_token"}:
            out[name] = field.contents()
    return out


def fix_special_tokens(tokenizer: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Set the special tokens and BOS/EOS insertion the GGUF declares; returns what was set.

    transformers 4.57 builds a llama-architecture GGUF tokenizer with eos = bos and always adds BOS (SmolLM2's GGUF
    says eos ``<|im_end|>``, no BOS), so generation would not stop and every text would gain a token.
    """
    done: dict[str, Any] = {}
    for attr, key in SPECIAL_IDS.items():
        if isinstance(meta.get(key), int):
            setattr(tokenizer, attr, tokenizer.convert_ids_to_tokens(meta[key]))
            done[attr] = getattr(tokenizer, attr)
    for flag in ("add_bos_token", "add_eos_token"):
        if isinstance(meta.get(flag), bool) and hasattr(tokenizer, flag):
            setattr(tokenizer, flag, meta[flag])
            done[flag] = meta[flag]
    return done


def _load(gguf_path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)


def rebuild(loaded: Any) -> Any:
    """A fresh model of the same class and config holding ``loaded``'s weights (one that ``save_pretrained`` takes).

    Raises:
        ZooError: a weight is missing or unexpected (the GGUF mapping and the config disagree).
    """
    import torch

    config = loaded.config
    config.dtype = torch.float32
    with torch.device("meta"):
        fresh = type(loaded)(config)
    state = loaded.state_dict()
    result = fresh.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if k not in _tied(fresh)]
    if missing or result.unexpected_keys:
        raise ZooError(f"GGUF weights do not match {type(loaded).__name__}: missing {missing[:3]}, "
                       f"unexpected {result.unexpected_keys[:3]}")
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    return fresh.eval()


def _tied(model: Any) -> set[str]:
    keys = getattr(model, "_tied_weights_keys", None) or []
    return set(keys if isinstance(keys, list | tuple | set) else keys.keys())
