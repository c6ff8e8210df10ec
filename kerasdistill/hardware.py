"""What the machine can do fast, for choices made by "auto" settings."""

from __future__ import annotations

import functools

import tensorflow as tf


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


def default_outer_precision() -> str:
    """Mixed bfloat16 convolutions on a CPU that runs them fast; float32 elsewhere
    (GPUs included, where we have not measured the trade-off yet)."""
    if tf.config.list_physical_devices("GPU"):
        return "float32"
    return "mixed_conv_bfloat16" if cpu_has_fast_bfloat16() else "float32"
