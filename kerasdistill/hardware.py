"""What the machine can do fast."""

from __future__ import annotations

import functools
import logging

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


def warn_if_slow_bfloat16(precision: str | None):
    """bfloat16 convolutions without bf16 instructions are emulated and slow."""
    if precision == "mixed_conv_bfloat16" and not tf.config.list_physical_devices("GPU") \
            and not cpu_has_fast_bfloat16():
        logging.warning("mixed_conv_bfloat16 was asked for, but this CPU has no bf16 "
                        "instructions: the outer pass will be slower, not faster")
