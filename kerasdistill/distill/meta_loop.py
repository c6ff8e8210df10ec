"""The outer loop on the device: many meta steps in one compiled call.

Each call runs a stretch of meta steps (by default all of them up to the next
validation point) as one `tf.while_loop`: it draws each step's inner batch with a
stateless RNG keyed by (seed, global step), gathers the outer batch from the
target set already on the device, runs the meta step, applies the reset rule
(docs/method.md section 2c) and swaps in a fresh learner when it fires. The host syncs once per
call instead of once per step: on 2 CPU cores the per-step sync, the Python reset
tracker and the numpy draw cost ~20% of a LeNet step (issue 8), and on a GPU they
would cost more.

Fresh learners cannot be initialised inside the graph the way the host does it
(a Keras model is built per seed), so each call receives a small stack of them,
as many as the reset rule can possibly use in that many steps
(`max_resets_within`), and picks the next one at each reset.

With a tf.distribute strategy (several GPUs, or logical CPU devices in the tests)
each step's outer batch is split evenly over the replicas and the meta step runs
on each with its share (`strategy.run`); the hypergradient is averaged across them
inside the step (meta_step.mean_over_replicas). A synchronisation point cannot sit
inside a while-loop that runs in a replica, so the loop runs in the cross-replica
context and calls `strategy.run` once per step; every replica ends the step with
the same state, and the loop carries the first replica's copy.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from kerasdistill.data.augmentation import NO_AUGMENTATION, Augmentation
from kerasdistill.data.pipeline import inner_batch_indices
from kerasdistill.distill.meta_step import MetaState, meta_step_function
from kerasdistill.distill.resets import ResetState, reset_rule_step
from kerasdistill.training.learner import pick
from kerasdistill.training.solver import InnerSolver
from kerasdistill.training.trainer import augmentation_seed


class StretchInputs(NamedTuple):
    """What one call needs besides the state: the data and this stretch's draws."""

    base_images: tf.Tensor      # n x H x W x C
    train_images: tf.Tensor     # the target's training split, on the device
    train_labels: tf.Tensor
    outer_indices: tf.Tensor    # steps x outer batch: rows of train_images, per step
    first_step: tf.Tensor       # int32, global step of the first of these steps
    inner_seed: tf.Tensor       # int32, seeds the inner-batch draw with the global step
    fresh_learners: Any         # learner nest, stacked on a leading axis


class StretchResult(NamedTuple):
    """What one call returns to the host."""

    state: MetaState
    resets: ResetState
    steps_done: tf.Tensor       # int32; fewer than asked when a step was non-finite
    outer_errors: tf.Tensor     # [steps] float32 (entries past steps_done are 0)
    reset_at: tf.Tensor         # [steps] bool: the learner was reset after this step
    reset_points: tf.Tensor     # [max resets] int32, the first `resets_used` are valid
    resets_used: tf.Tensor      # int32
    finite: tf.Tensor           # [3] bool, the last step's checks (meta_step.FINITE_CHECKS)


def make_meta_loop(solver: InnerSolver, inner_batch_size: int, reset_window: int,
                   label_learning_rate: float = 1e-3, jit_compile: bool = False,
                   strategy: tf.distribute.Strategy | None = None,
                   label_parameterization: str = "clip",
                   augmentation: Augmentation = NO_AUGMENTATION):
    """Returns the compiled stretch of meta steps:

        (state: MetaState, resets: ResetState, inputs: StretchInputs) -> StretchResult

    A stretch stops early, after the offending step, when a step's loss,
    hypergradient or labels are not finite; the state returned is then the state
    before that step, so nothing non-finite leaves the call.
    """
    meta_step = meta_step_function(solver, label_learning_rate, label_parameterization,
                                   augmentation)

    def replica_step(state, base_images, inner_indices, outer_images, outer_labels,
                     augment_seed):
        context = tf.distribute.get_replica_context()
        replicas, replica = context.num_replicas_in_sync, context.replica_id_in_sync_group

        def share(batch):
            return tf.reshape(batch, tf.concat([[replicas, -1], tf.shape(batch)[1:]], 0))[replica]

        return meta_step(state, base_images, inner_indices, share(outer_images),
                         share(outer_labels), augment_seed)

    def step(state, inputs: StretchInputs, inner_indices, outer_row, augment_seed):
        # The batch is gathered where the training split lives; only the batch (not the
        # split) then travels to the replicas' devices.
        outer_images = tf.gather(inputs.train_images, outer_row)
        outer_labels = tf.gather(inputs.train_labels, outer_row)
        if strategy is None:
            return meta_step(state, inputs.base_images, inner_indices, outer_images,
                             outer_labels, augment_seed)
        per_replica = strategy.run(replica_step, args=(
            state, inputs.base_images, inner_indices, outer_images, outer_labels,
            augment_seed))
        return tf.nest.map_structure(lambda t: strategy.experimental_local_results(t)[0],
                                     per_replica)

    def run_stretch(state: MetaState, resets: ResetState, inputs: StretchInputs):
        num_steps = tf.shape(inputs.outer_indices)[0]
        num_base = tf.shape(inputs.base_images)[0]
        max_resets = tf.shape(tf.nest.flatten(inputs.fresh_learners)[0])[0]

        def body(i, state, resets, errors, reset_at, points, used, finite):
            draw = tf.stack([inputs.inner_seed, inputs.first_step + i])
            inner_indices = inner_batch_indices(
                num_base, inner_batch_size, solver.inner_batches_per_step, draw)
            new_state, metrics = step(state, inputs, inner_indices, inputs.outer_indices[i],
                                      augmentation_seed(draw))
            finite = metrics.finite
            ok = tf.reduce_all(finite)
            new_resets, reset, point = reset_rule_step(resets, metrics.outer_error,
                                                       reset_window)
            reset = tf.logical_and(reset, ok)
            # The bound makes `used` < max_resets; the host checks it after the call.
            slot = tf.minimum(used, max_resets - 1)
            learner = tf.cond(reset, lambda: solver.admit_fresh_learner(
                new_state.learner, pick(inputs.fresh_learners, slot)),
                              lambda: new_state.learner)
            new_state = new_state._replace(learner=learner)
            # A non-finite step changes nothing: the host reports it and stops.
            state, resets = tf.cond(ok, lambda: (new_state, new_resets),
                                    lambda: (state, resets))
            errors = tf.tensor_scatter_nd_update(errors, [[i]],
                                                 [tf.cast(metrics.outer_error, tf.float32)])
            reset_at = tf.tensor_scatter_nd_update(reset_at, [[i]], [reset])
            points = tf.cond(reset, lambda: tf.tensor_scatter_nd_update(
                points, [[slot]], [point]), lambda: points)
            used = used + tf.cast(reset, tf.int32)
            return i + 1, state, resets, errors, reset_at, points, used, finite

        def keep_going(i, state, resets, errors, reset_at, points, used, finite):
            return tf.logical_and(i < num_steps, tf.reduce_all(finite))

        loop_vars = (tf.constant(0, tf.int32), state, resets,
                     tf.zeros([num_steps], tf.float32), tf.zeros([num_steps], tf.bool),
                     tf.zeros([max_resets], tf.int32), tf.constant(0, tf.int32),
                     tf.ones([3], tf.bool))
        steps_done, state, resets, errors, reset_at, points, used, finite = tf.while_loop(
            keep_going, body, loop_vars)
        return StretchResult(state, resets, steps_done, errors, reset_at, points, used, finite)

    return tf.function(run_stretch, jit_compile=jit_compile, reduce_retracing=True)
