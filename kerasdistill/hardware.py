"""What the machine can do fast, and the precision choices that depend on it.

TensorFlow is imported inside the functions so that entry points can read the
choices below (for their flags) without loading TensorFlow before `--help`.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import sys

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def enable_onednn_by_default() -> str | None:
    """Turns oneDNN on for TensorFlow on x86 CPUs unless the user decided otherwise.

    TensorFlow 2.21 leaves oneDNN off on x86 CPUs without AVX-512 (AVX2-only AMD EPYC,
    for one), which makes every convolution about 3x slower (BUILD_NOTES). The
    variable is read when TensorFlow is imported, so this must run first: the
    package's __init__ calls it. A user's own TF_ENABLE_ONEDNN_OPTS always wins.
    When TensorFlow was imported earlier with oneDNN off on such a CPU, it warns
    once instead. Returns the value now in force (None: not x86, left alone).
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return os.environ.get(ONEDNN_VARIABLE)
    if ONEDNN_VARIABLE in os.environ:
        return os.environ[ONEDNN_VARIABLE]
    if "tensorflow" in sys.modules:
        flags = _cpu_flags()
        if flags and "avx512f" not in flags:  # where TensorFlow's own default is off
            # The package's logger: a root-logger call would configure the user's logging.
            logging.getLogger("kerasdistill").warning(
                "TensorFlow was imported before kerasdistill, with oneDNN off on this CPU "
                "(no AVX-512): convolutions run about 3x slower. Set %s=1 before importing "
                "TensorFlow, or import kerasdistill first", ONEDNN_VARIABLE)
        return None
    os.environ[ONEDNN_VARIABLE] = "1"
    return "1"


def enable_gpu_memory_growth() -> list[str]:
    """Lets TensorFlow take GPU memory as it needs it instead of all of it at start,
    so an evaluation or a second run can share the GPU. Must run before any GPU is
    used; every entry point calls it first. Returns the GPUs it set (none on a CPU)."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: leave it as it is
            logging.getLogger("kerasdistill").warning(
                "GPU %s was initialised before memory growth could be set", gpu.name)
    return [gpu.name for gpu in gpus]


def device_description() -> dict:
    """The machine and the accelerators TensorFlow sees, for config.json."""
    import tensorflow as tf
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append({"name": gpu.name, "model": details.get("device_name"),
                     "compute_capability": details.get("compute_capability")})
    return {**machine_description(), "gpus": gpus}


def machine_description() -> dict:
    """The CPU and the oneDNN setting, for benchmark and run records: timings mean
    nothing without them."""
    model = next((line.split(":", 1)[1].strip() for line in _cpu_flags().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    flags = _cpu_flags()
    return {"cpu_model": model, "cpu_count": os.cpu_count(),
            "avx512f": "avx512f" in flags, "avx2": "avx2" in flags,
            "avx512_bf16": "avx512_bf16" in flags,
            ONEDNN_VARIABLE: os.environ.get(ONEDNN_VARIABLE)}


def device_summary(device: dict) -> str:
    """config.json's device record in a few words: CPU, its vector units, oneDNN, GPUs."""
    if not device:
        return ""
    units = "AVX-512" + (" BF16" if device.get("avx512_bf16") else "") \
        if device.get("avx512f") else ("AVX2" if device.get("avx2") else "no AVX2")
    onednn = {"1": "on", "0": "off"}.get(str(device.get(ONEDNN_VARIABLE)), "default")
    words = [f"{device.get('cpu_model', '?')}, {device.get('cpu_count', '?')} cores, {units}, "
             f"oneDNN {onednn}"]
    words += [gpu.get("model") or gpu.get("name", "GPU") for gpu in device.get("gpus", [])]
    return "; ".join(words)


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bfloat16() -> bool:
    """True when the CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX),
    which oneDNN uses for bfloat16 convolutions."""
    flags = _cpu_flags()
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
