"""The outer loop's step: one pure function shared by every inner solver."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from kerasdistill.config import LABEL_PARAMETERIZATIONS
from kerasdistill.data.augmentation import NO_AUGMENTATION, Augmentation
from kerasdistill.errors import require_one_of
from kerasdistill.training.adam import AdamState, adam_init, adam_update
from kerasdistill.training.solver import InnerSolver


class MetaState(NamedTuple):
    """Everything a meta step changes: the labels, their optimizer, the learner."""

    soft_labels: tf.Tensor
    label_optimizer: AdamState
    learner: Any


class StepMetrics(NamedTuple):
    outer_loss: tf.Tensor
    outer_error: tf.Tensor
    inner_loss: tf.Tensor
    # [outer loss, hypergradient, labels after Adam] each finite? Checked by the
    # loop after every step, so a NaN stops the run instead of being projected away.
    finite: tf.Tensor


FINITE_CHECKS = ("outer loss", "hypergradient", "labels")


def uniform_labels(num_base_examples: int, num_classes: int, dtype=tf.float32) -> tf.Tensor:
    """docs/method.md section 2: labels start uniform, every entry 1/C."""
    return tf.fill([num_base_examples, num_classes], tf.constant(1.0 / num_classes, dtype))


def init_meta_state(solver: InnerSolver, soft_labels: tf.Tensor, seed: int) -> MetaState:
    return MetaState(soft_labels=soft_labels, label_optimizer=adam_init([soft_labels]),
                     learner=solver.init_meta_learner(seed))


def project_to_simplex_rows(soft_labels: tf.Tensor) -> tf.Tensor:
    """docs/method.md section 2: clip to [0, 1], then renormalise every row to sum 1.

    A row clipped to all zeros (possible only with very large label learning
    rates) would divide by zero; it becomes uniform instead of NaN. Non-finite
    labels never get here unnoticed: the step reports them (StepMetrics.finite)
    and the loop stops.
    """
    clipped = tf.clip_by_value(soft_labels, 0.0, 1.0)
    row_sums = tf.reduce_sum(clipped, axis=-1, keepdims=True)
    num_classes = tf.cast(tf.shape(soft_labels)[-1], soft_labels.dtype)
    return tf.where(row_sums > 0, clipped / tf.where(row_sums > 0, row_sums, 1.0),
                    1.0 / num_classes)


def mean_over_replicas(*values):
    """The mean over the replicas of a tf.distribute strategy (the values themselves
    outside one). Each replica sees an equal share of the outer batch, and the outer
    loss, its error and the label hypergradient are all linear in the per-example
    losses, so their means over the replicas are exactly the whole batch's values.
    Everything else in a step depends on the inner batch only and is the same on
    every replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return tuple(context.all_reduce(tf.distribute.ReduceOp.MEAN, list(values)))


def _smallest_normal(dtype) -> float:
    return float(np.finfo(dtype.as_numpy_dtype).tiny)


def softmax_label_update(soft_labels: tf.Tensor, label_grad: tf.Tensor,
                         label_optimizer: AdamState, label_learning_rate: float):
    """One Adam step on logits z with softmax(z) = `soft_labels`; returns (logits after
    the step, their optimizer, the new labels).

    The logits are not kept: z = log(labels) is one of them (softmax is unchanged by a
    constant added to a row, and so is its gradient, whose rows sum to zero), so the
    labels alone carry the state, exactly, as with clipping. Entries below float's
    smallest normal number (exact zeros of one-hot labels) are taken at that number:
    their gradient y (g - <g, y>) is then ~0 and they stay near zero.
    """
    logits = tf.math.log(tf.maximum(soft_labels, _smallest_normal(soft_labels.dtype)))
    logit_grad = soft_labels * (label_grad - tf.reduce_sum(label_grad * soft_labels, axis=-1,
                                                           keepdims=True))
    (logits,), label_optimizer = adam_update([logits], [logit_grad], label_optimizer,
                                             label_learning_rate)
    return logits, label_optimizer, tf.nn.softmax(logits)


def meta_step_function(solver: InnerSolver, label_learning_rate: float = 1e-3,
                       label_parameterization: str = "clip",
                       augmentation: Augmentation = NO_AUGMENTATION):
    """The meta step as a plain Python function (not traced):

        (state, base_images, inner_indices, outer_images, outer_labels[, augment_seed])
            -> (new_state, StepMetrics)

    It gathers the inner batch, asks the solver for the inner labels' hypergradient,
    scatters it into a dense gradient over all labels (dense as in the paper's
    Adam: unselected rows still decay their moments) and applies Adam, then clipping
    and renormalisation (or, with label_parameterization="softmax", Adam on the
    labels' logits). `inner_indices` is n_i indices, or K x n_i for a solver that
    unrolls K inner steps (`solver.inner_batches_per_step`); an index in several of
    the K batches gets the sum of its gradients. `make_meta_step` compiles it alone;
    the in-graph outer loop (meta_loop.py) runs it as the body of a while-loop.
    With an `augmentation`, the inner images are transformed with `augment_seed`
    (shape [2]) before the solver sees them; the outer batch never is (it measures).
    """
    require_one_of("label_parameterization", label_parameterization, LABEL_PARAMETERIZATIONS)

    def meta_step(state: MetaState, base_images, inner_indices, outer_images, outer_labels,
                  augment_seed=None):
        inner_images = tf.gather(base_images, inner_indices)
        if augmentation:
            if augment_seed is None:
                raise ValueError("an augmented meta step needs its augment_seed")
            inner_images = augmentation(inner_images, augment_seed)
        inner_labels = tf.gather(state.soft_labels, inner_indices)
        step = solver.meta_gradient(state.learner, inner_images, inner_labels,
                                    outer_images, outer_labels)
        inner_label_grad, outer_loss, outer_error = mean_over_replicas(
            step.inner_label_grad, step.outer_loss, step.outer_error)
        label_grad = tf.scatter_nd(inner_indices[..., None], inner_label_grad,
                                   tf.shape(state.soft_labels))
        if label_parameterization == "softmax":
            stepped, label_optimizer, projected = softmax_label_update(
                state.soft_labels, label_grad, state.label_optimizer, label_learning_rate)
        else:
            (stepped,), label_optimizer = adam_update(
                [state.soft_labels], [label_grad], state.label_optimizer, label_learning_rate)
            projected = project_to_simplex_rows(stepped)
        learner = solver.after_label_update(step, state.learner, inner_images, inner_labels,
                                            tf.gather(projected, inner_indices))
        new_state = MetaState(projected, label_optimizer, learner)
        finite = tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in
                           (outer_loss, inner_label_grad, stepped)])
        return new_state, StepMetrics(outer_loss, outer_error, step.inner_loss, finite)

    return meta_step


def make_meta_step(solver: InnerSolver, label_learning_rate: float = 1e-3,
                   jit_compile: bool = False, label_parameterization: str = "clip",
                   augmentation: Augmentation = NO_AUGMENTATION):
    """One meta step per call, compiled (traced once per input signature): the
    benchmark's bare step and the reference the in-graph loop is tested against."""
    return tf.function(meta_step_function(solver, label_learning_rate,
                                          label_parameterization, augmentation),
                       jit_compile=jit_compile, reduce_retracing=True)
