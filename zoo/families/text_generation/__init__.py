"""The causal-LM family: GGUF conversion, the domain text set, perplexity and a task metric, and one loader.

``load_generator(artifact_dir)`` loads any causal-LM artifact (transformers fp32/bf16, bitsandbytes 4-bit, or an
ONNX Runtime export) behind one API, so evaluation and the Space never branch on formats.
"""

from zoo.families.text_generation.generator import FORMATS, Generator, load_generator

__all__ = ["FORMATS", "Generator", "load_generator"]
