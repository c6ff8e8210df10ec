"""The target stream: seeded, resumable outer minibatches as rows of indices.

The outer loop gathers each step's batch from the training split on the device
(distill/meta_loop.py), so the host only makes these index rows, one stretch of
steps at a time.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kerasdistill.seeding import EPOCH_ORDER, rng_for


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Outer batches per epoch: enough for every example to be seen once (the last
    batch is filled up by wrapping around, see `epoch_index_batches`)."""
    batch_size = min(batch_size, num_examples)
    return -(-num_examples // batch_size)


def random_subset(num_items, subset_size: int, seed: tf.Tensor) -> tf.Tensor:
    """`subset_size` distinct indices from range(num_items), a pure function of `seed`
    (a stateless draw, so the graph can make it for any step without host state)."""
    # Philox named: the default algorithm may differ between devices and XLA.
    keys = tf.random.stateless_uniform([num_items], seed=seed, alg="philox")
    return tf.argsort(keys)[:subset_size]


def inner_batch_indices(num_items, subset_size: int, num_batches: int,
                        seed: tf.Tensor) -> tf.Tensor:
    """One inner batch (`random_subset`, shape [subset_size]), or for num_batches = K > 1
    K of them ([K, subset_size]), each drawn without replacement and independently of
    the others. Batch 0 is the one-batch draw itself, so K = 1 and the first of K
    batches coincide; batch k > 0 folds k into the seed."""
    if num_batches == 1:
        return random_subset(num_items, subset_size, seed)
    return tf.stack([random_subset(num_items, subset_size, seed if k == 0 else
                                   tf.random.experimental.stateless_fold_in(seed, k))
                     for k in range(num_batches)])


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the target set in `epoch`: a function of (seed, epoch) alone,
    so a resumed run sees exactly the batches an uninterrupted one would."""
    return rng_for(seed, EPOCH_ORDER, epoch).permutation(num_examples)


def epoch_index_batches(num_examples: int, batch_size: int, seed: int,
                        epoch: int) -> np.ndarray:
    """The outer minibatches of `epoch` as rows of indices (steps x batch): consecutive
    slices of the epoch's order. Every example is seen each epoch: a ragged last batch
    is filled up with the first examples of the same order (wrapping around), so shapes
    stay static. (Dropping the tail instead skips up to a batch of examples every
    epoch: 18% of a 5,000-example target set, 2% of MNIST's 50,000.)"""
    batch_size = min(batch_size, num_examples)
    steps = steps_per_epoch(num_examples, batch_size)
    order = epoch_order(num_examples, seed, epoch)
    wrapped = np.concatenate([order, order[:steps * batch_size - num_examples]])
    return wrapped.reshape(steps, batch_size).astype(np.int32)
