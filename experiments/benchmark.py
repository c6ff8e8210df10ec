r"""Times meta steps: second-order and ridge regression, against a plain TF graph.

  python -m experiments.benchmark                      # second-order, LeNet, MNIST shapes
  python -m experiments.benchmark --jit_compile        # the same under XLA
  python -m experiments.benchmark --output_json=bench.json
  python -m experiments.benchmark --algorithm=ridge_regression
  python -m experiments.benchmark --architecture=alexnet   # CIFAR shapes (32x32x3)
  python -m experiments.benchmark --measure=step,loop,evaluation --output_json=bench.json

--measure=loop times the meta step inside `distill_labels` (steps per second of the
whole outer loop on a synthetic target, validation excluded, the first epoch's
tracing excluded), in-graph stretches against one step per call, next to the bare
step. --measure=evaluation times the protocol's test models: 20 fresh models
trained and measured one after another, against trained together.

The plain reference (ordinary TF ops, no Keras) exists for second-order LeNet on
MNIST shapes; for other architectures the table compares the library's configurations.
Every configuration in the table runs in this one process, in interleaved rounds
(so a load that comes and goes hits all of them alike), after warm-up; the figure
is the median milliseconds per step over all timed steps. Run it on an otherwise
idle machine: on 2 cores any other process can double a timing.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time

from absl import app, flags

from kerasdistill.hardware import (DEFAULT_OUTER_PRECISION, OUTER_PRECISIONS,
                                   machine_description)

FLAGS = flags.FLAGS
flags.DEFINE_enum("algorithm", "second_order", ["second_order", "ridge_regression"],
                  "Algorithm of the configuration asked for.")
flags.DEFINE_enum("architecture", "lenet", ["lenet", "alexnet", "resnet", "convnet"],
                  "lenet: MNIST shapes (28x28x1); others: CIFAR shapes (32x32x3).")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the configuration asked for.")
flags.DEFINE_enum("outer_precision", DEFAULT_OUTER_PRECISION, list(OUTER_PRECISIONS),
                  "Precision of the outer pass of the configuration asked for "
                  "(auto: the library's choice for this machine).")
flags.DEFINE_integer("outer_splits", 2, "Shards of the outer batch.")
flags.DEFINE_enum("hypergradient", "forward", ["forward", "reverse"], "Hypergradient mode.")
flags.DEFINE_integer("horizon_steps", 0, "T > 0: time the whole-run horizon's meta step "
                     "(T training steps of a fresh model, reverse mode; needs "
                     "--hypergradient=reverse) instead of the one-step look-ahead; no "
                     "comparison table. The JSON then records the process's peak memory.")
flags.DEFINE_integer("outer_batch_size", 1024, "Outer (target) batch size.")
flags.DEFINE_integer("inner_batch_size", 50, "Inner batch size.")
flags.DEFINE_integer("num_base_examples", 100, "Base examples.")
flags.DEFINE_integer("steps", 30, "Timed steps per configuration (at least 20).")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds the timed steps are spread over.")
flags.DEFINE_boolean("compare", True, "Also time the table's other configurations.")
flags.DEFINE_string("output_json", None, "Write the figures for the configuration asked here.")
flags.DEFINE_list("measure", ["step"], "What to time: step, loop, evaluation.")
flags.DEFINE_integer("loop_epochs", 4, "Epochs of the timed outer loop (the first is warm-up).")
flags.DEFINE_integer("loop_steps_per_epoch", 24, "Outer batches per epoch of its target set.")
flags.DEFINE_integer("eval_models", 20, "Test models per evaluation timing.")
flags.DEFINE_integer("eval_steps", 300, "Training steps per test model.")
flags.DEFINE_integer("eval_test_examples", 10000, "Test examples each model is measured on.")
flags.DEFINE_list("eval_models_per_call", ["1", "5", "10", "20"],
                  "Models trained together per call; 1 is one after another.")


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from kerasdistill.distill.adam import adam_init
    from kerasdistill.distill.meta_step import init_meta_state, make_meta_step, uniform_labels
    from kerasdistill.distill.plain_reference import plain_meta_step
    from kerasdistill.distill.registry import build_solver
    from kerasdistill.models import ModelFactory

    if FLAGS.steps < 20:
        raise app.UsageError("--steps must be at least 20")
    unknown = set(FLAGS.measure) - {"step", "loop", "evaluation"}
    if unknown:
        raise app.UsageError(f"--measure takes step, loop, evaluation; got {sorted(unknown)}")
    horizon = FLAGS.horizon_steps
    if horizon < 0:
        raise app.UsageError(f"--horizon_steps must be 0 or positive, got {horizon}")
    if horizon and (FLAGS.hypergradient != "reverse" or FLAGS.algorithm != "second_order"):
        raise app.UsageError("--horizon_steps needs --hypergradient=reverse and "
                             "--algorithm=second_order")
    if horizon and set(FLAGS.measure) != {"step"}:
        raise app.UsageError("--horizon_steps times the meta step only (--measure=step)")
    shape = (28, 28, 1) if FLAGS.architecture == "lenet" else (32, 32, 3)
    rng = np.random.default_rng(0)
    base_images = tf.constant(rng.normal(size=(FLAGS.num_base_examples, *shape)), tf.float32)
    outer_images = tf.constant(rng.normal(size=(FLAGS.outer_batch_size, *shape)), tf.float32)
    outer_labels = tf.constant(rng.integers(0, 10, FLAGS.outer_batch_size), tf.int32)
    # One inner batch; T of them (one per training step) for the horizon.
    inner_indices = tf.constant(np.stack([
        rng.permutation(FLAGS.num_base_examples)[:FLAGS.inner_batch_size]
        for _ in range(max(1, horizon))]), tf.int32)
    if not horizon:
        inner_indices = inner_indices[0]
    factory = ModelFactory(FLAGS.architecture, shape, 10)

    def keras_runner(jit_compile, outer_precision, outer_splits, hypergradient,
                     algorithm="second_order"):
        solver = build_solver(algorithm, factory, outer_splits=outer_splits,
                              outer_precision=outer_precision, hypergradient=hypergradient,
                              horizon_steps=horizon)
        step = make_meta_step(solver, jit_compile=jit_compile)
        state = init_meta_state(solver, uniform_labels(FLAGS.num_base_examples, 10), seed=0)

        def run(state):
            new_state, metrics = step(state, base_images, inner_indices, outer_images,
                                      outer_labels)
            float(metrics.outer_loss)  # wait for the step to finish
            return new_state
        return run, state, solver.outer_precision

    def plain_runner(jit_compile):
        step = tf.function(plain_meta_step, jit_compile=jit_compile)
        weights = list(factory.initial_weights(0)[0])
        labels = uniform_labels(FLAGS.num_base_examples, 10)
        state = (labels, adam_init([labels]), weights, adam_init(weights))

        def run(state):
            new_state = step(*state, base_images, inner_indices, outer_images, outer_labels)
            float(new_state[0][0, 0])
            return new_state
        return run, state, "float32"

    asked = (f"{FLAGS.algorithm} (asked)", keras_runner(
        FLAGS.jit_compile, FLAGS.outer_precision, FLAGS.outer_splits, FLAGS.hypergradient,
        FLAGS.algorithm))
    has_plain = FLAGS.architecture == "lenet" and not horizon
    configs = [asked] + ([("plain TF graph (reference)", plain_runner(False))] if has_plain
                         else [])
    if FLAGS.compare and not horizon:
        for algorithm in ("second_order", "ridge_regression"):
            configs += [
                (f"{algorithm}, float32, 1 shard",
                 keras_runner(False, "float32", 1, "forward", algorithm)),
                (f"{algorithm}, float32, 2 shards",
                 keras_runner(False, "float32", 2, "forward", algorithm)),
                (f"{algorithm}, mixed bf16 conv, 2 shards",
                 keras_runner(False, "mixed_conv_bfloat16", 2, "forward", algorithm))]
        if has_plain:
            configs.append(("second_order, float32, 2 shards, reverse",
                            keras_runner(False, "float32", 2, "reverse")))
        configs.append((f"{FLAGS.algorithm}, asked, " + ("no XLA" if FLAGS.jit_compile else "XLA"),
                        keras_runner(not FLAGS.jit_compile, FLAGS.outer_precision,
                                     FLAGS.outer_splits, FLAGS.hypergradient, FLAGS.algorithm)))
    states, timings = {}, {name: [] for name, _ in configs}
    for name, (run, state, _) in configs:  # warm-up: tracing, compilation, caches
        for _ in range(5):
            state = run(state)
        states[name] = state
    per_round = -(-FLAGS.steps // FLAGS.rounds)
    for _ in range(FLAGS.rounds):
        for name, (run, _, _) in configs:
            state = states[name]
            for _ in range(per_round):
                start = time.perf_counter()
                state = run(state)
                timings[name].append(1000 * (time.perf_counter() - start))
            states[name] = state
    medians = {name: float(np.median(times)) for name, times in timings.items()}
    plain = medians.get("plain TF graph (reference)", medians[asked[0]])
    baseline_name = "plain" if has_plain else "asked"
    print(f"\nMeta step{f' (whole-run horizon T = {horizon})' if horizon else ''}, "
          f"{FLAGS.architecture} {shape}, outer batch {FLAGS.outer_batch_size}, inner batch "
          f"{FLAGS.inner_batch_size}, {len(timings[asked[0]])} timed steps each "
          f"(TensorFlow {tf.__version__}, {platform.processor() or platform.machine()})")
    print(f"{'configuration':45s} {'precision':>20s} {'ms/step':>9s} {'vs ' + baseline_name:>9s}")
    for name, (_, _, precision) in configs:
        print(f"{name:45s} {precision:>20s} {medians[name]:9.2f} {medians[name] / plain:9.3f}")
    payload = {}
    if "loop" in FLAGS.measure:
        payload["loop"] = measure_loop(factory, shape, medians[asked[0]])
    if "evaluation" in FLAGS.measure:
        payload["evaluation"] = measure_evaluation(factory, shape)
    if FLAGS.output_json:
        payload.update({
            "ms_per_step_median": medians[asked[0]],
            "plain_reference_ms_per_step_median": plain if has_plain else None,
            "ratio_to_plain_reference": medians[asked[0]] / plain if has_plain else None,
            "configuration": {"algorithm": FLAGS.algorithm, "architecture": FLAGS.architecture,
                              "jit_compile": FLAGS.jit_compile,
                              "outer_precision": asked[1][2],
                              "outer_precision_requested": FLAGS.outer_precision,
                              "outer_splits": FLAGS.outer_splits,
                              "hypergradient": FLAGS.hypergradient,
                              "horizon_steps": horizon,
                              "outer_batch_size": FLAGS.outer_batch_size,
                              "inner_batch_size": FLAGS.inner_batch_size},
            "all_configurations_ms": medians,
            "timed_steps": len(timings[asked[0]]),
            # The whole process's peak resident memory: the horizon keeps T steps'
            # activations for the reverse pass. Linux reports KiB, macOS bytes.
            "peak_memory_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (
                2 ** 30 if sys.platform == "darwin" else 2 ** 20),
            "machine": machine_description(),
            "tensorflow_version": tf.__version__,
            "command_flags": {name: FLAGS[name].value for name in (
                "measure", "steps", "rounds", "loop_epochs", "loop_steps_per_epoch",
                "eval_models", "eval_steps", "eval_test_examples", "eval_models_per_call")},
        })
        with open(FLAGS.output_json, "w") as f:
            json.dump(payload, f, indent=1)


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
    import time

    import numpy as np
    from kerasdistill.distill.registry import build_solver
    from kerasdistill.evaluation.training import EvaluationTrainer
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


if __name__ == "__main__":
    app.run(main)
