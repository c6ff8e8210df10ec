"""Adam as a pure function of explicit state.

Keras optimizers keep their moments in variables; the meta step needs them as
plain tensors it receives and returns, so resets, checkpoints and nested tapes
stay simple. The update is PyTorch's form of Adam (epsilon added to the
bias-corrected root), which the reference implementation and the paper used.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import tensorflow as tf


class AdamState(NamedTuple):
    """Step count and first/second moments, one per parameter tensor."""

    step: tf.Tensor
    first_moments: tuple
    second_moments: tuple


def adam_init(params: Sequence[tf.Tensor]) -> AdamState:
    zeros = tuple(tf.zeros_like(p) for p in params)
    dtype = params[0].dtype if params else tf.float32
    return AdamState(step=tf.zeros([], dtype), first_moments=zeros, second_moments=zeros)


def adam_update(params: Sequence[tf.Tensor], grads: Sequence[tf.Tensor], state: AdamState,
                learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999,
                epsilon: float = 1e-8,
                differentiable: bool = False) -> tuple[tuple, AdamState]:
    """One Adam step; returns (new_params, new_state).

    `differentiable=True` is for a tape that differentiates *through* the step (the
    whole-run horizon): a weight whose gradient has been exactly 0 so far has v = 0, and
    the reverse pass of sqrt at 0 is 0 * inf. TensorFlow's own kernel gives 0 there, XLA
    gives NaN; the guarded root gives 0 under both and the same values forward.
    """
    step = state.step + 1
    # tf.constant, not tf.cast: casting a Python float goes through float32 first.
    bias_1 = 1.0 - tf.pow(tf.constant(beta_1, step.dtype), step)
    bias_2 = 1.0 - tf.pow(tf.constant(beta_2, step.dtype), step)
    new_params, first, second = [], [], []
    for param, grad, m, v in zip(params, grads, state.first_moments, state.second_moments):
        grad = tf.convert_to_tensor(grad)  # gathers give IndexedSlices
        m = beta_1 * m + (1.0 - beta_1) * grad
        v = beta_2 * v + (1.0 - beta_2) * tf.square(grad)
        root = (_guarded_sqrt(v / tf.cast(bias_2, v.dtype)) if differentiable else
                tf.sqrt(v / tf.cast(bias_2, v.dtype)))
        update = (m / tf.cast(bias_1, m.dtype)) / (root + epsilon)
        new_params.append(param - learning_rate * update)
        first.append(m)
        second.append(v)
    return tuple(new_params), AdamState(step, tuple(first), tuple(second))


def _guarded_sqrt(x: tf.Tensor) -> tf.Tensor:
    """sqrt(x) for x >= 0 whose gradient at 0 is 0 rather than 0 * inf."""
    positive = x > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))),
                    tf.zeros_like(x))
