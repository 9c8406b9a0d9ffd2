"""The one CPU-kernel guard for bitsandbytes 4-bit models; standalone (no zoo imports) so Spaces ship this file.

bitsandbytes 0.50 repacks a ``Linear4bit`` for its AVX512-BF16 CPU kernel at the first CPU inference call and fails
("shape '[N, 0]' is invalid") when ``in_features`` is not a multiple of the quantization block (64) or
``out_features`` of 32; such layers (toy models, or a classification head quantized by mistake) keep the generic
kernel, which computes the same NF4 product.
"""


def unpackable(in_features: int, out_features: int, block: int = 64) -> bool:
    """Whether the packed CPU kernel fails on a 4-bit linear layer of this shape."""
    return bool(in_features % block or out_features % 32)


def guard_cpu_kernel(model) -> int:
    """Keep bitsandbytes' packed AVX512-BF16 CPU kernel off the 4-bit layers it cannot pack; returns their count."""
    guarded = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is None or not hasattr(module, "support_avx512bf16_for_cpu"):
            continue
        out_features, in_features = state.shape[0], state.shape[-1]
        if unpackable(in_features, out_features, state.blocksize or 64):
            module.support_avx512bf16_for_cpu = False
            guarded += 1
    return guarded
