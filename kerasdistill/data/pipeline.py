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


_MASK32 = 0xFFFFFFFF


def _as_uint32(seed) -> tf.Tensor:
    """A seed's entries as int64 tensors holding their low 32 bits."""
    return tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), _MASK32)


def _mix32(h: tf.Tensor) -> tf.Tensor:
    """A 32-bit integer hash (xor-shift-multiply rounds) of int64 tensors holding
    values in [0, 2^32). The multipliers are odd and below 2^31, so no product
    overflows int64."""
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))
    h = tf.bitwise.bitwise_and(h * 0x7FEB352D, _MASK32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 15))
    h = tf.bitwise.bitwise_and(h * 0x68E31DA5, _MASK32)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))


def _hash_from_keys(keys: tf.Tensor, count) -> tf.Tensor:
    """`counter_hash` of every key in `keys` (int64, any shape S): shape S + [count]."""
    counter = tf.range(tf.cast(count, tf.int64), dtype=tf.int64)
    spread = tf.bitwise.bitwise_and(counter * 0x61C88647, _MASK32)
    keys = keys[..., None]
    return _mix32(tf.bitwise.bitwise_xor(
        _mix32(tf.bitwise.bitwise_and(keys + spread, _MASK32)), keys))


def _key(first: tf.Tensor, second: tf.Tensor) -> tf.Tensor:
    return _mix32(tf.bitwise.bitwise_xor(_mix32(first), second))


def counter_hash(seed: tf.Tensor, count) -> tf.Tensor:
    """`count` pseudo-random 32-bit integers (int64), a pure function of `seed` (shape
    [2], any integer dtype) and the position.

    Not tf.random's stateless ops: their draws differ between XLA and plain graphs
    (measured on TF 2.21: `stateless_uniform(..., alg="philox")` gives other numbers
    under jit_compile), and the meta loop is compiled with XLA or without it per
    session (autotune), so a resumed run would draw otherwise than an uninterrupted
    one. Integer arithmetic is the same everywhere."""
    seed = _as_uint32(seed)
    return _hash_from_keys(_key(seed[0], seed[1]), count)


def counter_uniform(seed: tf.Tensor, shape, dtype=tf.float32) -> tf.Tensor:
    """Uniform draws in [0, 1) of `shape` from `counter_hash` (24 bits each)."""
    count = tf.reduce_prod(shape)
    bits = tf.bitwise.right_shift(counter_hash(seed, count), 8)
    return tf.reshape(tf.cast(bits, dtype) / float(2 ** 24), shape)


def fold_in(seed: tf.Tensor, data: int) -> tf.Tensor:
    """A new seed (shape [2], int64) for stream `data` of `seed`, by `counter_hash`."""
    seed = _as_uint32(seed)
    return tf.stack([_mix32(tf.bitwise.bitwise_xor(
        seed[0], _mix32(_as_uint32(data)))), seed[1]])


def random_subset(num_items, subset_size: int, seed: tf.Tensor) -> tf.Tensor:
    """`subset_size` distinct indices from range(num_items), a pure function of `seed`
    (a stateless draw, so the graph can make it for any step without host state; the
    same with XLA and without, see `counter_hash`)."""
    return tf.argsort(counter_hash(seed, num_items), stable=True)[:subset_size]


def inner_batch_indices(num_items, subset_size: int, num_batches: int,
                        seed: tf.Tensor) -> tf.Tensor:
    """One inner batch (`random_subset`, shape [subset_size]), or for num_batches = K > 1
    K of them ([K, subset_size]), each drawn without replacement and independently of
    the others. Batch 0 is the one-batch draw itself, so K = 1 and the first of K
    batches coincide; batch k > 0 folds k into the seed."""
    if num_batches == 1:
        return random_subset(num_items, subset_size, seed)
    # All K draws as one [K, num_items] hash and one sort, the same numbers as K
    # separate `random_subset(fold_in(seed, k))` draws (tested) in a graph that does not
    # grow with K (the whole-run horizon draws T = 200 batches per meta step).
    seed = _as_uint32(seed)
    folded = _mix32(tf.bitwise.bitwise_xor(
        seed[0], _mix32(tf.range(1, num_batches, dtype=tf.int64))))
    firsts = tf.concat([seed[:1], folded], 0)
    keys = _key(firsts, seed[1])
    return tf.argsort(_hash_from_keys(keys, num_items), axis=1,
                      stable=True)[:, :subset_size]


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


def soft_label_dataset(images, soft_labels, batch_size: int, seed: int | None = None,
                       shuffle: bool = True, repeat: bool = True,
                       drop_remainder: bool = True) -> tf.data.Dataset:
    """(image, soft label) pairs, reshuffled every pass, batched, for `model.fit`."""
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.asarray(images), np.asarray(soft_labels, np.float32)))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
