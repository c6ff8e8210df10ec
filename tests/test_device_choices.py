"""What "auto" becomes per device, and the GPU-only paths run on the CPU."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill.autotune import choose_jit_compile
from kerasdistill.distill.registry import build_solver
from kerasdistill.errors import DistillError
from kerasdistill.hardware import device_description, enable_gpu_memory_growth
from kerasdistill.models import ModelFactory


def _shapes():
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    rng = np.random.default_rng(0)
    base = tf.constant(rng.normal(size=(10, 28, 28, 1)), tf.float32)
    outer = tf.constant(rng.normal(size=(32, 28, 28, 1)), tf.float32)
    labels = tf.constant(rng.integers(0, 10, 32), tf.int32)
    return solver, base, outer, labels


ON_CPU = pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")),
                            reason="the CPU rule; a GPU measures instead")


@ON_CPU
def test_auto_on_a_cpu_is_off_without_measuring():
    solver, base, outer, labels = _shapes()
    chosen, record = choose_jit_compile("auto", solver, base, outer, labels, 5, 10)
    assert chosen is False and "ms_per_meta_step" not in record
    assert "CPU" in record["how"]


def test_auto_measures_both_where_a_gpu_would():
    solver, base, outer, labels = _shapes()
    chosen, record = choose_jit_compile("auto", solver, base, outer, labels, 5, 10,
                                        measure_on_cpu=True)
    timings = record["ms_per_meta_step"]
    assert set(timings) == {"true", "false"} and all(t > 0 for t in timings.values())
    assert record["how"] == "auto: measured here"
    # The faster one is kept (on this CPU: no XLA, which is ~2.5x slower here).
    assert chosen == (timings["true"] < timings["false"]) == record["jit_compile"]


@pytest.mark.parametrize("asked", [True, False])
def test_an_explicit_choice_is_kept(asked):
    chosen, record = choose_jit_compile(asked, *_shapes(), 5, 10)
    assert chosen is asked and record == {"jit_compile": asked, "how": "asked"}


def test_a_bad_choice_is_refused():
    with pytest.raises(DistillError, match="jit_compile must be one of"):
        choose_jit_compile("sometimes", *_shapes(), 5, 10)


@ON_CPU
def test_gpu_memory_growth_and_device_record_on_a_cpu():
    assert tf.config.list_physical_devices("GPU") == []
    assert enable_gpu_memory_growth() == []
    description = device_description()
    assert description["gpus"] == [] and description["cpu_count"] >= 1


def test_a_distributed_loop_is_not_xla_compiled():
    chosen, record = choose_jit_compile("auto", *_shapes(), 5, 10, measure_on_cpu=True,
                                        distributed=True)
    assert chosen is False and "distribute" in record["how"]
