"""Settings chosen per device by measuring them there (`--jit_compile=auto`).

On CPUs XLA has been measured slower for every configuration of the meta step
(BENCHMARKS.md: 2.2x on AVX2 with oneDNN, 3.5x on AVX-512), so "auto" there means
off without a measurement. On a GPU nothing in this project's history says which
is faster, so "auto" times a few meta steps of the run's own shapes both ways and
keeps the faster; what was measured goes into config.json.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from kerasdistill.config import JIT_CHOICES
from kerasdistill.distill.meta_step import init_meta_state, make_meta_step, uniform_labels
from kerasdistill.errors import require_one_of
from kerasdistill.training.solver import InnerSolver


def time_meta_step(solver: InnerSolver, jit_compile: bool, base_images, outer_images,
                   outer_labels, inner_batch_size: int, num_classes: int,
                   steps: int = 5) -> float:
    """Median milliseconds of a compiled meta step on these shapes, after warm-up."""
    step = make_meta_step(solver, jit_compile=jit_compile)
    state = init_meta_state(solver, uniform_labels(int(base_images.shape[0]), num_classes), 0)
    inner = tf.range(inner_batch_size, dtype=tf.int32)
    if solver.inner_batches_per_step > 1:  # K inner batches (an unrolled solver)
        inner = tf.tile(inner[None], [solver.inner_batches_per_step, 1])
    times = []
    for index in range(steps + 2):  # two warm-up steps: tracing and compilation
        start = time.perf_counter()
        state, metrics = step(state, base_images, inner, outer_images, outer_labels)
        float(metrics.outer_loss)
        if index >= 2:
            times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def choose_jit_compile(requested, solver: InnerSolver, base_images, outer_images,
                       outer_labels, inner_batch_size: int, num_classes: int,
                       measure_on_cpu: bool = False,
                       distributed: bool = False) -> tuple[bool, dict]:
    """(use XLA?, a JSON-ready record of why). `measure_on_cpu` makes the CPU take
    the GPU's path (for tests and for checking the CPU rule). A distributed loop
    (strategy.run inside the compiled stretch) is never XLA-compiled: untested."""
    require_one_of("jit_compile", requested, JIT_CHOICES)
    if requested != "auto":
        return bool(requested), {"jit_compile": bool(requested), "how": "asked"}
    if distributed:
        return False, {"jit_compile": False, "how": "auto: off with --distribute"}
    if not tf.config.list_logical_devices("GPU") and not measure_on_cpu:
        return False, {"jit_compile": False,
                       "how": "auto: off on CPUs (XLA measured slower, BENCHMARKS.md)"}
    timings = {str(jit).lower(): time_meta_step(solver, jit, base_images, outer_images,
                                                outer_labels, inner_batch_size, num_classes)
               for jit in (False, True)}
    chosen = timings["true"] < timings["false"]
    return chosen, {"jit_compile": chosen, "how": "auto: measured here",
                    "ms_per_meta_step": timings}
