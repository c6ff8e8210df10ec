"""The target stream: seeded, resumable outer minibatches as a tf.data pipeline."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kerasdistill.seeding import EPOCH_ORDER, rng_for


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the ragged tail is dropped so shapes stay static."""
    return num_examples // min(batch_size, num_examples)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the target set in `epoch`: a function of (seed, epoch) alone,
    so a resumed run sees exactly the batches an uninterrupted one would."""
    return rng_for(seed, EPOCH_ORDER, epoch).permutation(num_examples)


def target_batches(images: tf.Tensor, labels: tf.Tensor, batch_size: int, seed: int,
                   epoch: int) -> tf.data.Dataset:
    """One epoch of (images, labels) outer minibatches with static shapes.

    Images stay in one tensor and batches are gathered from it, which is much
    cheaper than shuffling image elements through a tf.data buffer. When the
    target set is smaller than a batch (SPEC 5.5, tiny target sets), the batch is
    the whole set.
    """
    num_examples = int(images.shape[0])
    batch_size = min(batch_size, num_examples)
    order = epoch_order(num_examples, seed, epoch)
    dataset = tf.data.Dataset.from_tensor_slices(order.astype(np.int32))
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)),
                          num_parallel_calls=1, deterministic=True)
    return dataset.prefetch(2)
