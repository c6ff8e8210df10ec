"""What the machine can do fast, and the precision choices that depend on it.

TensorFlow is imported inside the functions so that entry points can read the
choices below (for their flags) without loading TensorFlow before `--help`.
"""

from __future__ import annotations

import functools
import logging

# Precisions of the outer pass. "auto": mixed bf16 on CPUs with bf16 instructions,
# float32 elsewhere (resolve_outer_precision; BUILD_NOTES has the measurements).
OUTER_PRECISIONS = ("auto", "float32", "mixed_conv_bfloat16")
DEFAULT_OUTER_PRECISION = "float32"


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bfloat16() -> bool:
    """True when the CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX),
    which oneDNN uses for bfloat16 convolutions."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_outer_precision(requested: str | None) -> str | None:
    """The outer pass's precision for `requested`; "auto" picks the fastest measured here.

    On a CPU with bf16 instructions the mixed bfloat16 outer pass is ~20% faster per
    meta step than float32 (BUILD_NOTES, benchmark), at some cost in accuracy
    (RESULTS.md), which is why "auto" is not the default. Without bf16 instructions
    bf16 is emulated and slower. On a GPU nothing has been measured yet, so "auto"
    stays float32 there.
    """
    if requested != "auto":  # None (the model's own precision) and explicit names pass through
        return requested
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU") or not cpu_has_fast_bfloat16():
        return "float32"
    return "mixed_conv_bfloat16"


def warn_if_slow_bfloat16(precision: str | None):
    """bfloat16 convolutions without bf16 instructions are emulated and slow."""
    import tensorflow as tf
    if precision == "mixed_conv_bfloat16" and not tf.config.list_physical_devices("GPU") \
            and not cpu_has_fast_bfloat16():
        logging.warning("mixed_conv_bfloat16 was asked for, but this CPU has no bf16 "
                        "instructions: the outer pass will be slower, not faster")
