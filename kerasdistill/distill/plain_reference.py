"""A plain-TensorFlow second-order meta step for LeNet, used as a yardstick.

No Keras and no tricks: LeNet written with `tf.nn` ops on a list of weight
tensors, the hypergradient by nested tapes (reverse over reverse), the learner's
Adam step reusing the inner gradient. The benchmark times it beside the library's
step, and a test checks that both compute the same update.
"""

from __future__ import annotations

import tensorflow as tf

from kerasdistill.distill.adam import AdamState, adam_update


def plain_lenet_logits(weights, images):
    """LeNet (SPEC 4) for 28x28x1 inputs; weights in Keras's order and layout."""
    k1, b1, k2, b2, k3, b3, k4, b4, k5, b5 = weights
    hidden = tf.nn.relu(tf.nn.conv2d(images, k1, 1, "SAME") + b1)
    hidden = tf.nn.max_pool2d(hidden, 2, 2, "VALID")
    hidden = tf.nn.relu(tf.nn.conv2d(hidden, k2, 1, "VALID") + b2)
    hidden = tf.nn.max_pool2d(hidden, 2, 2, "VALID")
    hidden = tf.reshape(hidden, [-1, 400])
    hidden = tf.nn.relu(hidden @ k3 + b3)
    hidden = tf.nn.relu(hidden @ k4 + b4)
    return hidden @ k5 + b5


def plain_meta_step(soft_labels, label_optimizer: AdamState, weights, weight_optimizer: AdamState,
                    base_images, inner_indices, outer_images, outer_labels,
                    inner_learning_rate=0.01, learning_rate=1e-3):
    """One second-order LD step (SPEC 2a); returns (labels, label_opt, weights, weight_opt)."""
    inner_images = tf.gather(base_images, inner_indices)
    with tf.GradientTape() as label_tape:
        label_tape.watch(soft_labels)
        inner_labels = tf.gather(soft_labels, inner_indices)
        with tf.GradientTape() as weight_tape:
            weight_tape.watch(weights)
            inner_logits = plain_lenet_logits(weights, inner_images)
            inner_loss = -tf.reduce_mean(
                tf.reduce_sum(inner_labels * tf.nn.log_softmax(inner_logits), axis=-1))
        grads = weight_tape.gradient(inner_loss, weights)
        fast_weights = [w - inner_learning_rate * g for w, g in zip(weights, grads)]
        outer_logits = plain_lenet_logits(fast_weights, outer_images)
        outer_loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(outer_labels, outer_logits))
    label_grad = label_tape.gradient(outer_loss, soft_labels)
    (new_labels,), label_optimizer = adam_update([soft_labels], [label_grad], label_optimizer,
                                                 learning_rate)
    new_labels = tf.clip_by_value(new_labels, 0.0, 1.0)
    new_labels = new_labels / tf.reduce_sum(new_labels, axis=-1, keepdims=True)
    weights, weight_optimizer = adam_update(weights, grads, weight_optimizer, learning_rate)
    return new_labels, label_optimizer, list(weights), weight_optimizer
