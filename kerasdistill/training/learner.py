"""The online model as explicit state, run through Keras's `stateless_call`."""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from kerasdistill.errors import DistillError
from kerasdistill.training.adam import AdamState, adam_init


class LearnerState(NamedTuple):
    """A Keras model's weights as tensors, with the Adam state that trains them."""

    weights: tuple
    non_trainable: tuple
    optimizer: AdamState


def soft_cross_entropy(logits: tf.Tensor, soft_labels: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of -sum_c y_c log softmax(logits)_c.

    Linear in `soft_labels`: the second-order solver's forward-mode
    hypergradient relies on that.
    """
    log_probs = tf.nn.log_softmax(logits)
    return -tf.reduce_mean(tf.reduce_sum(soft_labels * log_probs, axis=-1))


def error_rate(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    predictions = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    return tf.reduce_mean(tf.cast(tf.not_equal(predictions, labels), logits.dtype))


class FunctionalModel:
    """Runs one Keras model with weights passed in as tensors.

    `stateless_call` makes any Keras model a pure function of its weights, so
    nested tapes and forward accumulators can differentiate through weight
    updates ("fast weights") without touching the model's own variables.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        # Batch norm, as the authors' code runs it: batch statistics in every call.
        self.uses_batch_statistics = any(isinstance(layer, keras.layers.BatchNormalization)
                                         for layer in model._flatten_layers())

    def outer_splits(self, requested: int) -> int:
        """Shards for the outer pass: one for models with batch statistics, whose
        normalisation must see the whole outer batch, as the authors' single pass does."""
        return 1 if self.uses_batch_statistics else requested

    def predict(self, weights, non_trainable, images):
        """Logits of a trained model: batch norm on the batch's own statistics, as the
        authors' second-order models predict (their BatchNorm2d_fw is always in training
        mode; their LD RR models use running averages, ridge_regression.py)."""
        logits, _ = self(weights, non_trainable, images, training=self.uses_batch_statistics)
        return logits

    def __call__(self, weights, non_trainable, images, training=True):
        """Returns (logits, updated non-trainable weights)."""
        logits, non_trainable = self.model.stateless_call(
            list(weights), list(non_trainable), images, training=training)
        return logits, tuple(non_trainable)

    def fresh_learner(self, factory, seed: int) -> LearnerState:
        weights, non_trainable = factory.initial_weights(seed)
        return LearnerState(tuple(weights), tuple(non_trainable), adam_init(weights))


def stack_nests(nests):
    """Nests of one structure (learner states, weight tuples) as one nest whose every
    tensor is theirs stacked on a new leading axis: M models trained or held together."""
    return tf.nest.map_structure(lambda *tensors: tf.stack(tensors), *nests)


def pick(stacked, index):
    """Entry `index` (a tensor or an int) of a nest of stacked tensors."""
    return tf.nest.map_structure(lambda t: tf.gather(t, index), stacked)


def outer_shards(tensors, requested: int):
    """Splits each of `tensors` along the batch into `requested` equal shards (one
    shard when that does not divide the batch, e.g. a tiny target set). Shards
    give the inter-op scheduler independent work for the 2 cores."""
    if requested <= 0:
        raise DistillError(f"outer_splits must be positive, got {requested}")
    count = requested if tensors[0].shape[0] % requested == 0 else 1
    return list(zip(*[tf.split(tensor, count) for tensor in tensors]))
