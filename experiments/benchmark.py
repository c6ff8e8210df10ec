r"""Times meta steps: second-order and ridge regression, against a plain TF graph.

  python -m experiments.benchmark                      # second-order, LeNet, MNIST shapes
  python -m experiments.benchmark --jit_compile        # the same under XLA
  python -m experiments.benchmark --output_json=bench.json
  python -m experiments.benchmark --algorithm=ridge_regression
  python -m experiments.benchmark --architecture=alexnet   # CIFAR shapes (32x32x3)
  python -m experiments.benchmark --measure=step,loop,evaluation --output_json=bench.json
  python -m experiments.benchmark --measure=sweep --output_json=sweep.json

--measure=loop times the meta step inside `distill_labels` (steps per second of the
whole outer loop on a synthetic target, validation excluded, the first epoch's
tracing excluded), in-graph stretches against one step per call, next to the bare
step. --measure=evaluation times the protocol's test models: 20 fresh models
trained and measured one after another, against trained together.
--measure=sweep (the GPU sitting's, benchmarks/gpu_sitting.py) times every
configuration of a grid (--sweep_algorithms x --sweep_jit_compile x
--sweep_precisions) one after another, each with its first step's seconds
(tracing and compilation) and the peak memory of the device it ran on, then the
decision `--jit_compile=auto` makes for these shapes; the JSON is rewritten after
every configuration, so a sweep stopped by a time cap keeps what it measured.

The plain reference (ordinary TF ops, no Keras) exists for second-order LeNet on
MNIST shapes; for other architectures the table compares the library's configurations.
Every configuration in the table runs in this one process, in interleaved rounds
(so a load that comes and goes hits all of them alike), after warm-up; the figure
is the median milliseconds per step over all timed steps. Run it on an otherwise
idle machine: on 2 cores any other process can double a timing.
"""

from __future__ import annotations

import dataclasses
import platform
import resource
import sys
import time
from typing import Callable

from absl import app, flags

from kerasdistill.config import (ALGORITHMS, OUTER_PRECISIONS, DistillConfig, ExperimentConfig,
                                 rule_horizon)
from kerasdistill.hardware import machine_description

from . import entry_point
from .flags import define_config_flags

MEASURES = ("step", "loop", "evaluation", "sweep")
FLAGS = flags.FLAGS
# The settings a run has too are the run's options (kerasdistill/config.py), with their
# defaults; the architecture and inner batch are this command's own (a run's come from
# the budget table), as is --jit_compile (on or off, not auto).
define_config_flags((DistillConfig, ExperimentConfig), only=(
    "algorithm", "outer_precision", "outer_splits", "hypergradient", "horizon_steps",
    "outer_batch_size", "num_base_examples"))
flags.DEFINE_enum("architecture", "lenet", ["lenet", "alexnet", "resnet", "convnet"],
                  "lenet: MNIST shapes (28x28x1); others: CIFAR shapes (32x32x3).")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the configuration asked for.")
flags.DEFINE_integer("inner_batch_size", 50, "Inner batch size.")
flags.DEFINE_integer("steps", 30, "Timed steps per configuration (at least 20).")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds the timed steps are spread over.")
flags.DEFINE_boolean("compare", True, "Also time the table's other configurations.")
flags.DEFINE_string("output_json", None, "Write the figures for the configuration asked here.")
flags.DEFINE_list("measure", ["step"], "What to time: step, loop, evaluation; or sweep alone.")
flags.DEFINE_integer("loop_epochs", 4, "Epochs of the timed outer loop (the first is warm-up).")
flags.DEFINE_integer("loop_steps_per_epoch", 24, "Outer batches per epoch of its target set.")
flags.DEFINE_integer("eval_models", 20, "Test models per evaluation timing.")
flags.DEFINE_integer("eval_steps", 300, "Training steps per test model.")
flags.DEFINE_integer("eval_test_examples", 10000, "Test examples each model is measured on.")
flags.DEFINE_list("eval_models_per_call", ["1", "5", "10", "20"],
                  "Models trained together per call; 1 is one after another.")
flags.DEFINE_list("sweep_algorithms", list(ALGORITHMS), "--measure=sweep: algorithms.")
flags.DEFINE_list("sweep_jit_compile", ["false", "true"], "--measure=sweep: XLA off, on.")
flags.DEFINE_list("sweep_precisions", ["float32", "mixed_conv_bfloat16"],
                  "--measure=sweep: outer precisions.")

# Warm-up steps before timing: the first traces and compiles, the rest fill caches.
WARMUP_STEPS = 5


def check_flags():
    """Every refusal of a flag combination, before any model is built."""
    from kerasdistill.errors import DistillError, require_one_of
    if FLAGS.steps < 20:
        raise DistillError(f"--steps must be at least 20, got {FLAGS.steps}")
    unknown = set(FLAGS.measure) - set(MEASURES)
    if unknown:
        raise DistillError(f"--measure takes {', '.join(MEASURES)}; got {sorted(unknown)}")
    if "sweep" in FLAGS.measure and len(FLAGS.measure) > 1:
        raise DistillError("--measure=sweep runs alone (it times its own grid)")
    horizon = FLAGS.horizon_steps
    rule_horizon(horizon, FLAGS.algorithm, FLAGS.hypergradient, unroll_steps=1, learner_pool=1)
    if horizon and set(FLAGS.measure) != {"step"}:
        raise DistillError("--horizon_steps times the meta step only (--measure=step)")
    for algorithm in FLAGS.sweep_algorithms:
        require_one_of("--sweep_algorithms", algorithm, ALGORITHMS)
    for jit in FLAGS.sweep_jit_compile:
        require_one_of("--sweep_jit_compile", jit, ("false", "true"))
    for precision in FLAGS.sweep_precisions:
        require_one_of("--sweep_precisions", precision, OUTER_PRECISIONS)


@dataclasses.dataclass(frozen=True)
class SyntheticProblem:
    """Random tensors of one meta step's shapes (timing does not depend on values)."""
    shape: tuple
    base_images: object
    inner_indices: object  # [n_i], or [T, n_i] for the horizon
    outer_images: object
    outer_labels: object


def synthetic_problem(architecture: str, num_base: int, inner_batch: int, outer_batch: int,
                      horizon: int = 0) -> SyntheticProblem:
    import numpy as np
    import tensorflow as tf
    shape = (28, 28, 1) if architecture == "lenet" else (32, 32, 3)
    rng = np.random.default_rng(0)
    base_images = tf.constant(rng.normal(size=(num_base, *shape)), tf.float32)
    outer_images = tf.constant(rng.normal(size=(outer_batch, *shape)), tf.float32)
    outer_labels = tf.constant(rng.integers(0, 10, outer_batch), tf.int32)
    # One inner batch; T of them (one per training step) for the horizon.
    inner_indices = tf.constant(np.stack([rng.permutation(num_base)[:inner_batch]
                                          for _ in range(max(1, horizon))]), tf.int32)
    return SyntheticProblem(shape, base_images, inner_indices if horizon else inner_indices[0],
                            outer_images, outer_labels)


@dataclasses.dataclass
class StepRunner:
    """One configuration's meta step: `run(state)` takes a step and waits for it."""
    run: Callable
    state: object
    precision: str


def keras_step_runner(problem: SyntheticProblem, factory, algorithm="second_order",
                      jit_compile=False, outer_precision="float32", outer_splits=2,
                      hypergradient="forward", horizon=0) -> StepRunner:
    from kerasdistill.distill.meta_step import init_meta_state, make_meta_step, uniform_labels
    from kerasdistill.distill.registry import build_solver
    solver = build_solver(algorithm, factory, outer_splits=outer_splits,
                          outer_precision=outer_precision, hypergradient=hypergradient,
                          horizon_steps=horizon)
    step = make_meta_step(solver, jit_compile=jit_compile)
    num_base = int(problem.base_images.shape[0])
    state = init_meta_state(solver, uniform_labels(num_base, 10), seed=0)

    def run(state):
        new_state, metrics = step(state, problem.base_images, problem.inner_indices,
                                  problem.outer_images, problem.outer_labels)
        float(metrics.outer_loss)  # wait for the step to finish
        return new_state
    return StepRunner(run, state, solver.outer_precision)


def plain_step_runner(problem: SyntheticProblem, factory, jit_compile=False) -> StepRunner:
    import tensorflow as tf

    from kerasdistill.distill.meta_step import uniform_labels
    from kerasdistill.distill.plain_reference import plain_meta_step
    from kerasdistill.training.adam import adam_init
    step = tf.function(plain_meta_step, jit_compile=jit_compile)
    weights = list(factory.initial_weights(0)[0])
    labels = uniform_labels(int(problem.base_images.shape[0]), 10)
    state = (labels, adam_init([labels]), weights, adam_init(weights))

    def run(state):
        new_state = step(*state, problem.base_images, problem.inner_indices,
                         problem.outer_images, problem.outer_labels)
        float(new_state[0][0, 0])
        return new_state
    return StepRunner(run, state, "float32")


PLAIN = "plain TF graph (reference)"


def table_configurations(problem, factory, horizon: int) -> list[tuple[str, StepRunner]]:
    """The configuration asked for first, then what the table compares it with."""
    asked = (f"{FLAGS.algorithm} (asked)", keras_step_runner(
        problem, factory, FLAGS.algorithm, FLAGS.jit_compile, FLAGS.outer_precision,
        FLAGS.outer_splits, FLAGS.hypergradient, horizon))
    has_plain = FLAGS.architecture == "lenet" and not horizon
    configs = [asked] + ([(PLAIN, plain_step_runner(problem, factory))] if has_plain else [])
    if FLAGS.compare and not horizon:
        for algorithm in ALGORITHMS:
            configs += [
                (f"{algorithm}, float32, 1 shard",
                 keras_step_runner(problem, factory, algorithm, False, "float32", 1)),
                (f"{algorithm}, float32, 2 shards",
                 keras_step_runner(problem, factory, algorithm, False, "float32", 2)),
                (f"{algorithm}, mixed bf16 conv, 2 shards",
                 keras_step_runner(problem, factory, algorithm, False, "mixed_conv_bfloat16",
                                   2))]
        if has_plain:
            configs.append(("second_order, float32, 2 shards, reverse",
                            keras_step_runner(problem, factory, "second_order", False,
                                              "float32", 2, "reverse")))
        configs.append((f"{FLAGS.algorithm}, asked, " + ("no XLA" if FLAGS.jit_compile else "XLA"),
                        keras_step_runner(problem, factory, FLAGS.algorithm,
                                          not FLAGS.jit_compile, FLAGS.outer_precision,
                                          FLAGS.outer_splits, FLAGS.hypergradient)))
    return configs


def time_interleaved(configs: list[tuple[str, StepRunner]], steps: int,
                     rounds: int) -> dict[str, list[float]]:
    """Milliseconds of every timed step per configuration, after warm-up, the timed
    steps spread over interleaved rounds."""
    states, timings = {}, {name: [] for name, _ in configs}
    for name, runner in configs:  # warm-up: tracing, compilation, caches
        state = runner.state
        for _ in range(WARMUP_STEPS):
            state = runner.run(state)
        states[name] = state
    per_round = -(-steps // rounds)
    for _ in range(rounds):
        for name, runner in configs:
            state = states[name]
            for _ in range(per_round):
                start = time.perf_counter()
                state = runner.run(state)
                timings[name].append(1000 * (time.perf_counter() - start))
            states[name] = state
    return timings


def step_device() -> str:
    """The device the meta steps run on: TensorFlow's first GPU where there is one."""
    import tensorflow as tf
    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"


def reset_peak_memory(device: str):
    import tensorflow as tf
    try:
        tf.config.experimental.reset_memory_stats(device)
    except (ValueError, RuntimeError):  # an allocator without statistics
        pass


def peak_memory_gib(device: str) -> float | None:
    """Peak bytes of TensorFlow's allocator on `device` since the last reset, in GiB
    (None where the allocator keeps no statistics)."""
    import tensorflow as tf
    try:
        return tf.config.experimental.get_memory_info(device)["peak"] / 2 ** 30
    except (ValueError, RuntimeError):
        return None


def process_peak_memory_gib() -> float:
    """The whole process's peak resident memory. Linux reports KiB, macOS bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (
        2 ** 30 if sys.platform == "darwin" else 2 ** 20)


def sweep(problem: SyntheticProblem, factory, write: Callable[[dict], None]) -> dict:
    """`--jit_compile=auto`'s decision for the first algorithm (the protocol's, which a
    capped sweep must not lose), then each configuration of the grid alone, one after
    another, with its first step's seconds and its peak device memory, then the other
    algorithms' decisions; `write` gets the record after every configuration."""
    import gc

    import numpy as np
    import tensorflow as tf

    from kerasdistill.distill.autotune import choose_jit_compile
    from kerasdistill.distill.registry import build_solver
    from kerasdistill.hardware import device_description
    device = step_device()
    record = {"measure": "sweep", "architecture": FLAGS.architecture,
              "shape": list(problem.shape), "step_device": device,
              "outer_batch_size": FLAGS.outer_batch_size,
              "inner_batch_size": FLAGS.inner_batch_size,
              "num_base_examples": FLAGS.num_base_examples, "outer_splits": FLAGS.outer_splits,
              "timed_steps": FLAGS.steps, "device": device_description(),
              "tensorflow_version": tf.__version__, "configurations": [],
              "jit_compile_auto": {}, "complete": False}
    write(record)

    def decide(algorithm):
        solver = build_solver(algorithm, factory, outer_splits=FLAGS.outer_splits,
                              outer_precision="float32")
        _, why = choose_jit_compile("auto", solver, problem.base_images, problem.outer_images,
                                    problem.outer_labels, FLAGS.inner_batch_size, 10)
        record["jit_compile_auto"][algorithm] = why
        print(f"sweep: --jit_compile=auto for {algorithm}: {why}", flush=True)
        write(record)

    decide(FLAGS.sweep_algorithms[0])
    for algorithm in FLAGS.sweep_algorithms:
        for jit in (value == "true" for value in FLAGS.sweep_jit_compile):
            for precision in FLAGS.sweep_precisions:
                runner = state = None
                gc.collect()  # the last configuration's tensors out of this one's peak
                reset_peak_memory(device)
                runner = keras_step_runner(problem, factory, algorithm, jit, precision,
                                           FLAGS.outer_splits)
                start = time.perf_counter()
                state = runner.run(runner.state)
                first_step_seconds = time.perf_counter() - start
                for _ in range(WARMUP_STEPS - 1):
                    state = runner.run(state)
                times = []
                for _ in range(FLAGS.steps):
                    start = time.perf_counter()
                    state = runner.run(state)
                    times.append(1000 * (time.perf_counter() - start))
                entry = {"algorithm": algorithm, "jit_compile": jit,
                         "outer_precision": runner.precision,
                         "ms_per_step_median": float(np.median(times)),
                         "ms_per_step_min": float(np.min(times)),
                         "first_step_seconds": first_step_seconds,
                         "peak_memory_gib": peak_memory_gib(device)}
                record["configurations"].append(entry)
                print(f"sweep: {algorithm:16s} XLA {'on ' if jit else 'off'} "
                      f"{runner.precision:20s} {entry['ms_per_step_median']:9.2f} ms/step, "
                      f"first step {first_step_seconds:6.1f} s, peak "
                      f"{entry['peak_memory_gib'] or float('nan'):.2f} GiB", flush=True)
                write(record)
    for algorithm in FLAGS.sweep_algorithms[1:]:
        decide(algorithm)
    record["complete"] = True
    record["process_peak_memory_gib"] = process_peak_memory_gib()
    write(record)
    return record


def run():
    check_flags()
    import numpy as np
    import tensorflow as tf

    from kerasdistill.files import write_json_atomic
    from kerasdistill.models import ModelFactory

    horizon = FLAGS.horizon_steps
    problem = synthetic_problem(FLAGS.architecture, FLAGS.num_base_examples,
                                FLAGS.inner_batch_size, FLAGS.outer_batch_size, horizon)
    factory = ModelFactory(FLAGS.architecture, problem.shape, 10)
    if FLAGS.measure == ["sweep"]:
        sweep(problem, factory, lambda record: FLAGS.output_json and write_json_atomic(
            FLAGS.output_json, record))
        return
    configs = table_configurations(problem, factory, horizon)
    asked_name, asked = configs[0]
    timings = time_interleaved(configs, FLAGS.steps, FLAGS.rounds)
    medians = {name: float(np.median(times)) for name, times in timings.items()}
    has_plain = PLAIN in medians
    plain = medians.get(PLAIN, medians[asked_name])
    baseline_name = "plain" if has_plain else "asked"
    print(f"\nMeta step{f' (whole-run horizon T = {horizon})' if horizon else ''}, "
          f"{FLAGS.architecture} {problem.shape}, outer batch {FLAGS.outer_batch_size}, inner "
          f"batch {FLAGS.inner_batch_size}, {len(timings[asked_name])} timed steps each "
          f"(TensorFlow {tf.__version__}, {platform.processor() or platform.machine()})")
    print(f"{'configuration':45s} {'precision':>20s} {'ms/step':>9s} {'vs ' + baseline_name:>9s}")
    for name, runner in configs:
        print(f"{name:45s} {runner.precision:>20s} {medians[name]:9.2f} "
              f"{medians[name] / plain:9.3f}")
    payload = {}
    if "loop" in FLAGS.measure:
        payload["loop"] = measure_loop(factory, problem.shape, medians[asked_name])
    if "evaluation" in FLAGS.measure:
        payload["evaluation"] = measure_evaluation(factory, problem.shape)
    if FLAGS.output_json:
        payload.update({
            "ms_per_step_median": medians[asked_name],
            "plain_reference_ms_per_step_median": plain if has_plain else None,
            "ratio_to_plain_reference": medians[asked_name] / plain if has_plain else None,
            "configuration": {"algorithm": FLAGS.algorithm, "architecture": FLAGS.architecture,
                              "jit_compile": FLAGS.jit_compile,
                              "outer_precision": asked.precision,
                              "outer_precision_requested": FLAGS.outer_precision,
                              "outer_splits": FLAGS.outer_splits,
                              "hypergradient": FLAGS.hypergradient,
                              "horizon_steps": horizon,
                              "outer_batch_size": FLAGS.outer_batch_size,
                              "inner_batch_size": FLAGS.inner_batch_size},
            "all_configurations_ms": medians,
            "timed_steps": len(timings[asked_name]),
            # The horizon keeps T steps' activations for the reverse pass.
            "peak_memory_gib": process_peak_memory_gib(),
            "machine": machine_description(),
            "tensorflow_version": tf.__version__,
            "command_flags": {name: FLAGS[name].value for name in (
                "measure", "steps", "rounds", "loop_epochs", "loop_steps_per_epoch",
                "eval_models", "eval_steps", "eval_test_examples", "eval_models_per_call")},
        })
        write_json_atomic(FLAGS.output_json, payload)


def _synthetic_target(shape, num_train: int, num_test: int, seed: int = 0):
    import numpy as np

    from kerasdistill.data.registry import get_dataset_spec
    from kerasdistill.data.splits import TargetSplits
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(num_train + num_test, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, num_train + num_test).astype(np.int64)
    spec = get_dataset_spec("mnist" if shape == (28, 28, 1) else "cifar10")
    train, test = slice(0, num_train), slice(num_train, None)
    return TargetSplits(spec, images[train], labels[train], np.arange(num_train),
                        images[test][:500], labels[test][:500], np.arange(500),
                        images[test], labels[test])


def measure_loop(factory, shape, bare_step_ms: float) -> dict:
    """ms per meta step inside distill_labels, in-graph stretches and one step per call."""
    import dataclasses

    from kerasdistill.distill.loop import DistillConfig, distill_labels
    from kerasdistill.distill.registry import build_solver
    target = _synthetic_target(shape, FLAGS.outer_batch_size * FLAGS.loop_steps_per_epoch,
                               1000)
    solver = build_solver(FLAGS.algorithm, factory, outer_splits=FLAGS.outer_splits,
                          outer_precision=FLAGS.outer_precision,
                          hypergradient=FLAGS.hypergradient)
    config = DistillConfig(num_base_examples=FLAGS.num_base_examples,
                           inner_batch_size=FLAGS.inner_batch_size, epochs=FLAGS.loop_epochs,
                           outer_batch_size=FLAGS.outer_batch_size, seed=0,
                           validation_every_epochs=1, jit_compile=FLAGS.jit_compile)
    figures = {"bare_step_ms": bare_step_ms}
    for name, steps_per_call in (("in_graph", None), ("one_step_per_call", 1)):
        result = distill_labels(solver, dataclasses.replace(config, steps_per_call=steps_per_call),
                                target.train_images[:FLAGS.num_base_examples], target,
                                verbose=False)
        warm = dict(result.call_times)  # global step -> seconds
        first = FLAGS.loop_steps_per_epoch  # the first epoch traces and compiles
        ms = 1000 * (warm[result.meta_steps] - warm[first]) / (result.meta_steps - first)
        figures[f"{name}_ms_per_step"] = ms
        figures[f"{name}_vs_bare_step"] = ms / bare_step_ms
        print(f"loop, {name:18s}: {ms:8.2f} ms per meta step ({ms / bare_step_ms:.3f}x the bare "
              f"step), {result.meta_steps - first} steps timed")
    return figures


def measure_evaluation(factory, shape) -> dict:
    """Seconds for the protocol's test models, one after another and trained together."""
    import numpy as np

    from kerasdistill.distill.registry import build_solver
    from kerasdistill.training.trainer import EvaluationTrainer
    solver = build_solver("second_order", factory, outer_precision="float32")
    target = _synthetic_target(shape, FLAGS.num_base_examples, FLAGS.eval_test_examples, 1)
    base = target.train_images
    labels = np.random.default_rng(2).dirichlet(np.ones(10), len(base)).astype(np.float32)
    seeds = list(range(FLAGS.eval_models))
    figures = {"models": FLAGS.eval_models, "steps_per_model": FLAGS.eval_steps,
               "test_examples": FLAGS.eval_test_examples, "seconds": {}}
    for models_per_call in [int(m) for m in FLAGS.eval_models_per_call]:
        trainer = EvaluationTrainer(solver, base, FLAGS.inner_batch_size,
                                    models_per_call=models_per_call)
        trainer.test_accuracies(labels, 2, seeds, target.test_images[:200],
                                target.test_labels[:200])  # tracing
        start = time.perf_counter()
        trainer.test_accuracies(labels, FLAGS.eval_steps, seeds, target.test_images,
                                target.test_labels)
        figures["seconds"][str(models_per_call)] = time.perf_counter() - start
    one = figures["seconds"].get("1")
    for models_per_call, seconds in figures["seconds"].items():
        ratio = f", {seconds / one:.3f}x one after another" if one else ""
        print(f"evaluation, {models_per_call:>2s} per call: {seconds:7.2f} s for "
              f"{FLAGS.eval_models} models ({1000 * seconds / FLAGS.eval_models:.0f} ms per "
              f"model{ratio})")
    if one:
        figures["ratio_to_one_at_a_time"] = {m: s / one for m, s in figures["seconds"].items()}
    return figures


main = entry_point(run)

if __name__ == "__main__":
    app.run(main)
