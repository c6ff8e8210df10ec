"""Augmentation of the base images: an evaluation recipe (issue 13, item 3).

The paper trains every model on the base images as they are. With an augmentation,
each step's minibatch is transformed afresh, the same way everywhere the labels
meet a model: the inner batch of every meta step, every validation, baseline and
test model, and `experiments.train`'s `model.fit` (the distilled set's metadata
names the augmentation, and `experiments.train` repeats it). It is never applied
unless asked for, and a run with it is another run (its identity says so).

Operations (applied in this order, each example on its own draw):
- "crop": pad by 1/8 of the side with the image's reflection, then cut out a
  window of the original size at a random offset (a random translation of up to
  3 pixels on 28 x 28 images, 4 on 32 x 32);
- "flip": mirror left-right with probability 1/2 (for natural images, not digits);
- "colour": brightness shift and contrast scale, in units of the normalised
  pixel values (shift uniform in [-0.2, 0.2], scale in [0.8, 1.2] about the
  image's mean).

Draws are stateless (`data.pipeline.counter_uniform`), keyed by a seed that the caller
derives from the run's seed and the step, so a resumed run augments exactly as an
uninterrupted one, and a model trained in a stack of models sees what it would
alone. They are integer hashes, not tf.random's stateless ops, whose numbers differ
under XLA (the meta loop may be compiled with XLA in one session, without in the
next). The labels are learned, not the images, so nothing is differentiated
through the transform; it is written with gathers and arithmetic only and works
under XLA.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from kerasdistill.config import AUGMENTATIONS, canonical_augment
from kerasdistill.data.pipeline import counter_uniform, fold_in

_BRIGHTNESS, _CONTRAST = 0.2, 0.2


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Which operations of AUGMENTATIONS run; () is none (the paper's).

    Example:
        augmentation = Augmentation(("crop",))
        images = augmentation(images, tf.constant([7, 0]))  # B x H x W x C, same shape
    """

    operations: tuple = ()

    def __post_init__(self):
        # One spelling per recipe: the order of application is fixed.
        object.__setattr__(self, "operations", canonical_augment(self.operations))

    def __bool__(self) -> bool:
        return bool(self.operations)

    def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """`images` (... x H x W x C, any leading dims) transformed; `seed` is a
        shape-[2] integer tensor. No operations: `images` itself."""
        if not self.operations:
            return images
        shape = tf.shape(images)
        batch = tf.reshape(images, tf.concat([[-1], shape[-3:]], 0))
        for index, operation in enumerate(AUGMENTATIONS):
            if operation in self.operations:
                op_seed = fold_in(seed, index)
                batch = _OPERATIONS[operation](batch, op_seed)
        return tf.reshape(batch, shape)


def crop_padding(side: int) -> int:
    return max(1, side // 8)


def _random_crop(images, seed):
    height, width = images.shape[1], images.shape[2]
    pad_y, pad_x = crop_padding(height), crop_padding(width)
    padded = tf.pad(images, [[0, 0], [pad_y, pad_y], [pad_x, pad_x], [0, 0]], mode="REFLECT")
    count = tf.shape(images)[0]
    offsets = counter_uniform(seed, tf.stack([count, 2]))
    dy = tf.cast(offsets[:, 0] * (2 * pad_y + 1), tf.int32)
    dx = tf.cast(offsets[:, 1] * (2 * pad_x + 1), tf.int32)
    rows = tf.minimum(dy, 2 * pad_y)[:, None] + tf.range(height)[None]
    cols = tf.minimum(dx, 2 * pad_x)[:, None] + tf.range(width)[None]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def _random_flip(images, seed):
    flip = counter_uniform(seed, tf.shape(images)[:1]) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def _random_colour(images, seed):
    count = tf.shape(images)[0]
    draws = 2.0 * counter_uniform(seed, tf.stack([count, 2]), images.dtype) - 1.0
    shift = (_BRIGHTNESS * draws[:, 0])[:, None, None, None]
    scale = (1.0 + _CONTRAST * draws[:, 1])[:, None, None, None]
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * scale + mean + shift


_OPERATIONS = {"crop": _random_crop, "flip": _random_flip, "colour": _random_colour}
NO_AUGMENTATION = Augmentation()
