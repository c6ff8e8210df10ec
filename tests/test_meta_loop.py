"""The in-graph outer loop (meta_loop.py) against the step-at-a-time path and the
Python reset rule."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.data.pipeline import epoch_index_batches, inner_batch_indices
from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.data.splits import TargetSplits
from kerasdistill.distill.loop import DistillConfig, distill_labels
from kerasdistill.distill.meta_step import init_meta_state, make_meta_step, uniform_labels
from kerasdistill.distill.registry import build_solver
from kerasdistill.distill.resets import (ResetTracker, absorb_reset_state, max_resets_within,
                                         reset_rule_step, reset_state_of)
from kerasdistill.models import ModelFactory
from kerasdistill.seeding import INNER_BATCH, LEARNER, derive_seed


def _graph_resets(errors, window, chunk=7):
    """Feeds `errors` through the graph rule in chunks, via the host record as the
    loop does between calls; returns (steps that reset, tracker)."""
    tracker, resets = ResetTracker(window), []
    step = tf.function(lambda state, error: reset_rule_step(state, error, window))
    for begin in range(0, len(errors), chunk):
        state, points = reset_state_of(tracker), []
        for offset, error in enumerate(errors[begin:begin + chunk]):
            state, reset, point = step(state, tf.constant(error, tf.float32))
            if bool(reset):
                resets.append(begin + offset + 1)
                points.append(int(point))
        absorb_reset_state(tracker, state, points)
    return resets, tracker


@pytest.mark.parametrize("window", [1, 3, 5])
def test_graph_reset_rule_equals_the_python_rule(window):
    rng = np.random.default_rng(window)
    # Falling, flat and noisy stretches, on the 1/64 grid of a 64-image batch and off it.
    errors = np.concatenate([np.linspace(0.9, 0.2, 30), np.full(40, 0.5),
                             rng.integers(0, 64, 60) / 64, rng.uniform(0, 1, 60)])
    errors = errors.astype(np.float32).tolist()
    python = ResetTracker(window)
    expected = [step for step, e in enumerate(errors, 1) if python.update(e)]
    resets, tracker = _graph_resets(errors, window)
    assert expected, "the sequence must make the rule reset"
    assert resets == expected
    assert tracker.reset_points == python.reset_points
    assert tracker.state_dict() == python.state_dict()


@pytest.mark.parametrize("window", [1, 2, 4])
def test_reset_bound_holds_and_is_reached(window):
    # A constant error resets as often as the rule allows: every 2 * window + 1 steps.
    errors = [0.5] * 60
    resets, _ = _graph_resets(errors, window, chunk=60)
    assert resets == list(range(2 * window + 1, 61, 2 * window + 1))
    for num_steps in range(1, 30):
        most = max(sum(1 for r in resets if start < r <= start + num_steps)
                   for start in range(0, 60 - num_steps))
        assert most == max_resets_within(num_steps, window)


def _tiny_target(num_train=320, seed=0):
    spec = get_dataset_spec("mnist")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num_train + 100).astype(np.int64)
    images = rng.normal(size=(num_train + 100, 28, 28, 1)).astype(np.float32)
    images[np.arange(len(labels)), 2 + 2 * labels, 4:20, 0] += 3.0  # learnable
    return TargetSplits(spec, images[:num_train], labels[:num_train], np.arange(num_train),
                        images[num_train:], labels[num_train:],
                        np.arange(num_train, num_train + 100), images[num_train:],
                        labels[num_train:])


def _step_at_a_time(solver, config, base_images, target, window):
    """The outer loop written the plain way: one compiled meta step per call, the
    Python reset rule, a host-side reset; the same draws as the in-graph loop."""
    step = make_meta_step(solver, config.label_learning_rate)
    state = init_meta_state(solver, uniform_labels(len(base_images), 10),
                            derive_seed(config.seed, LEARNER, 0))
    tracker, resets, global_step = ResetTracker(window), 0, 0
    inner_seed = derive_seed(config.seed, INNER_BATCH)
    train_images = tf.constant(target.train_images)
    train_labels = tf.constant(target.train_labels.astype(np.int32))
    for epoch in range(config.epochs):
        for outer in epoch_index_batches(len(target.train_images), config.outer_batch_size,
                                         config.seed, epoch):
            inner = inner_batch_indices(len(base_images), config.inner_batch_size,
                                        solver.inner_batches_per_step,
                                        tf.constant([inner_seed, global_step], tf.int32))
            state, metrics = step(state, tf.constant(base_images), inner,
                                  tf.gather(train_images, outer), tf.gather(train_labels, outer))
            global_step += 1
            if tracker.update(float(metrics.outer_error)):
                resets += 1
                # A fresh learner replaces the learner (a pool's oldest member).
                state = state._replace(learner=solver.admit_fresh_learner(
                    state.learner, solver.init_learner(derive_seed(config.seed, LEARNER,
                                                                   resets))))
    return state.soft_labels.numpy(), tracker, global_step


def tiny_loop_problem(epochs: int, validation_every_epochs: int):
    """(target, 10 base images, a DistillConfig) small enough to run the whole outer loop
    in a test: 32-image outer batches, reset window 2, seed 3."""
    target = _tiny_target()
    config = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=epochs,
                           outer_batch_size=32, seed=3,
                           validation_every_epochs=validation_every_epochs, reset_window=2)
    return target, target.train_images[:10], config


def interrupted_and_resumed(solver, config, base_images, target, checkpoint_dir,
                            validation_checkpoints=(5, 10, 20)):
    """(the uninterrupted run, the run stopped after half its epochs and resumed from its
    checkpoint in `checkpoint_dir`), after checking that both end with the same labels
    and validation curve, bit for bit."""
    checkpoints = list(validation_checkpoints)
    whole = distill_labels(solver, config, base_images, target, verbose=False,
                           validation_checkpoints=checkpoints)
    distill_labels(solver, dataclasses.replace(config, epochs=config.epochs // 2), base_images,
                   target, verbose=False, checkpoint_dir=checkpoint_dir,
                   validation_checkpoints=checkpoints)
    resumed = distill_labels(solver, config, base_images, target, verbose=False,
                             checkpoint_dir=checkpoint_dir, validation_checkpoints=checkpoints)
    assert resumed.resumed_from_epoch == config.epochs // 2
    np.testing.assert_array_equal(resumed.final_soft_labels, whole.final_soft_labels)
    assert resumed.validation_curve == whole.validation_curve
    return whole, resumed


@pytest.mark.parametrize("algorithm", ["second_order", "ridge_regression"])
def test_in_graph_loop_equals_the_step_at_a_time_path(algorithm):
    target, base_images, config = tiny_loop_problem(epochs=6, validation_every_epochs=3)
    solver = build_solver(algorithm, ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    expected_labels, tracker, steps = _step_at_a_time(solver, config, base_images, target, 2)
    assert tracker.reset_points, "the test needs resets to compare"
    for steps_per_call in (None, 1, 7):
        result = distill_labels(solver, dataclasses.replace(config, steps_per_call=steps_per_call),
                                base_images, target, verbose=False)
        assert result.meta_steps == steps == 60
        assert result.reset_points == tracker.reset_points
        # The same ops on the same values; a while-loop body may fuse differently from a
        # lone function, so allow float32 rounding.
        np.testing.assert_allclose(result.final_soft_labels, expected_labels, atol=1e-6)


def test_checkpoint_of_another_batch_draw_is_not_continued(tmp_path, monkeypatch):
    from kerasdistill.distill import progress
    from kerasdistill.errors import DistillError
    target = _tiny_target()
    config = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=2,
                           outer_batch_size=32, seed=3, validation_every_epochs=1)
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    first = distill_labels(solver, config, target.train_images[:10], target,
                           checkpoint_dir=str(tmp_path), verbose=False)
    monkeypatch.setattr(progress, "BATCH_DRAWS", "numpy permutation (kerasdistill 0.2)")
    with pytest.raises(DistillError, match="drew its batches differently"):
        distill_labels(solver, dataclasses.replace(config, epochs=3), target.train_images[:10],
                       target, checkpoint_dir=str(tmp_path), verbose=False)
    # A finished run may still be read back (evaluated again): no step is drawn.
    again = distill_labels(solver, config, target.train_images[:10], target,
                           checkpoint_dir=str(tmp_path), verbose=False)
    np.testing.assert_array_equal(again.soft_labels, first.soft_labels)
