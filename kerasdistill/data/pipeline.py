"""The target stream: seeded, resumable outer minibatches as a tf.data pipeline."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kerasdistill.seeding import EPOCH_ORDER, rng_for


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the ragged tail is dropped so shapes stay static."""
    return num_examples // min(batch_size, num_examples)


def random_subset(num_items, subset_size: int, seed: tf.Tensor) -> tf.Tensor:
    """`subset_size` distinct indices from range(num_items), a pure function of `seed`
    (a stateless draw, so the graph can make it for any step without host state)."""
    # Philox named: the default algorithm may differ between devices and XLA.
    keys = tf.random.stateless_uniform([num_items], seed=seed, alg="philox")
    return tf.argsort(keys)[:subset_size]


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the target set in `epoch`: a function of (seed, epoch) alone,
    so a resumed run sees exactly the batches an uninterrupted one would."""
    return rng_for(seed, EPOCH_ORDER, epoch).permutation(num_examples)


def epoch_index_batches(num_examples: int, batch_size: int, seed: int,
                        epoch: int) -> np.ndarray:
    """The outer minibatches of `epoch` as rows of indices (steps x batch): consecutive
    slices of the epoch's order, the ragged tail dropped so shapes stay static."""
    batch_size = min(batch_size, num_examples)
    steps = steps_per_epoch(num_examples, batch_size)
    order = epoch_order(num_examples, seed, epoch)
    return order[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def target_stream(images: tf.Tensor, labels: tf.Tensor, batch_size: int, seed: int,
                  first_epoch: int, end_epoch: int) -> tf.data.Dataset:
    """(images, labels) outer minibatches of epochs first_epoch .. end_epoch - 1, in order.

    One pipeline serves the whole run: tearing down a finished per-epoch pipeline
    cost from a few ms up to ~0.4 s per epoch here (erratic; up to ~19 ms per MNIST
    meta step, see BUILD_NOTES). Images stay in one tensor and batches are gathered from it, which
    is much cheaper than shuffling image elements through a tf.data buffer. When the
    target set is smaller than a batch (SPEC 5.5, tiny target sets), the batch is
    the whole set.
    """
    num_examples = int(images.shape[0])
    batch_size = min(batch_size, num_examples)

    def index_batches():
        for epoch in range(first_epoch, end_epoch):
            yield from epoch_index_batches(num_examples, batch_size, seed, epoch)

    dataset = tf.data.Dataset.from_generator(
        index_batches, output_signature=tf.TensorSpec([batch_size], tf.int32))
    dataset = dataset.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)),
                          num_parallel_calls=1, deterministic=True)
    return dataset.prefetch(2)


def target_batches(images: tf.Tensor, labels: tf.Tensor, batch_size: int, seed: int,
                   epoch: int) -> tf.data.Dataset:
    """One epoch of the target stream."""
    return target_stream(images, labels, batch_size, seed, epoch, epoch + 1)
