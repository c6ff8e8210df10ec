"""Plain-TensorFlow meta steps for LeNet, used as yardsticks.

No Keras and no tricks: LeNet written with `tf.nn` ops on a list of weight
tensors. Second order: the hypergradient by nested tapes (reverse over reverse),
the learner's Adam step reusing the inner gradient. Ridge regression: the reference
code's order, written out (ridge solve with the current labels, label update, then
theta and s trained towards the updated labels). The benchmark times the first beside
the library's step, and tests check that both compute the library's updates.
"""

from __future__ import annotations

import tensorflow as tf

from kerasdistill.training.adam import AdamState, adam_update


def plain_lenet_features(weights, images):
    """LeNet (docs/method.md section 4) for 28x28x1 inputs up to its 84 features; weights in Keras's
    order and layout."""
    k1, b1, k2, b2, k3, b3, k4, b4 = weights
    hidden = tf.nn.relu(tf.nn.conv2d(images, k1, 1, "SAME") + b1)
    hidden = tf.nn.max_pool2d(hidden, 2, 2, "VALID")
    hidden = tf.nn.relu(tf.nn.conv2d(hidden, k2, 1, "VALID") + b2)
    hidden = tf.nn.max_pool2d(hidden, 2, 2, "VALID")
    hidden = tf.reshape(hidden, [-1, 400])
    hidden = tf.nn.relu(hidden @ k3 + b3)
    return tf.nn.relu(hidden @ k4 + b4)


def plain_lenet_logits(weights, images):
    """LeNet (docs/method.md section 4) for 28x28x1 inputs; weights in Keras's order and layout."""
    return plain_lenet_features(weights[:8], images) @ weights[8] + weights[9]


def _label_update(soft_labels, label_grad, label_optimizer: AdamState, learning_rate):
    """docs/method.md section 2's label update: Adam, then clip to [0, 1] and renormalise
    each row."""
    (new_labels,), label_optimizer = adam_update([soft_labels], [label_grad],
                                                 label_optimizer, learning_rate)
    new_labels = tf.clip_by_value(new_labels, 0.0, 1.0)
    return new_labels / tf.reduce_sum(new_labels, axis=-1, keepdims=True), label_optimizer


def plain_meta_step(soft_labels, label_optimizer: AdamState, weights, weight_optimizer: AdamState,
                    base_images, inner_indices, outer_images, outer_labels,
                    inner_learning_rate=0.01, learning_rate=1e-3):
    """One second-order LD step (docs/method.md section 2a); returns (labels, label_opt,
    weights, weight_opt)."""
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
    new_labels, label_optimizer = _label_update(
        soft_labels, label_tape.gradient(outer_loss, soft_labels), label_optimizer,
        learning_rate)
    weights, weight_optimizer = adam_update(weights, grads, weight_optimizer, learning_rate)
    return new_labels, label_optimizer, list(weights), weight_optimizer


def _with_bias(features):
    return tf.concat([features, tf.ones_like(features[:, :1])], axis=1)


def plain_ridge_meta_step(soft_labels, label_optimizer: AdamState, weights,
                          weight_optimizer: AdamState, classifier, scale,
                          scale_optimizer: AdamState, base_images, inner_indices, outer_images,
                          outer_labels, l2=1.0, beta=0.01, learning_rate=1e-3,
                          scale_learning_rate=1e-2):
    """One LD RR step (docs/method.md section 2b) in the reference code's order; returns (labels,
    label_opt, weights, weight_opt, classifier, scale, scale_opt)."""
    inner_images = tf.gather(base_images, inner_indices)

    def solved(weights, labels):
        phi = _with_bias(plain_lenet_features(weights, inner_images))
        eye = tf.eye(tf.shape(phi)[0], dtype=phi.dtype)
        local = tf.transpose(phi) @ tf.linalg.solve(phi @ tf.transpose(phi) + l2 * eye, labels)
        return phi, (1.0 - beta) * classifier + beta * local

    with tf.GradientTape() as label_tape:
        label_tape.watch(soft_labels)
        old_inner = tf.gather(soft_labels, inner_indices)
        _, new_classifier = solved(weights, old_inner)
        outer_logits = _with_bias(plain_lenet_features(weights, outer_images)) @ (
            scale * new_classifier)
        outer_loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(outer_labels, outer_logits))
    new_labels, label_optimizer = _label_update(
        soft_labels, label_tape.gradient(outer_loss, soft_labels), label_optimizer,
        learning_rate)
    new_inner = tf.gather(new_labels, inner_indices)
    with tf.GradientTape() as tape:
        tape.watch(weights)
        tape.watch(scale)
        phi, step_classifier = solved(weights, old_inner)
        logits = phi @ (scale * step_classifier)
        loss = -tf.reduce_mean(tf.reduce_sum(new_inner * tf.nn.log_softmax(logits), axis=-1))
    grads = tape.gradient(loss, list(weights) + [scale])
    weights, weight_optimizer = adam_update(weights, grads[:-1], weight_optimizer, learning_rate)
    (scale,), scale_optimizer = adam_update([scale], grads[-1:], scale_optimizer,
                                            scale_learning_rate)
    return (new_labels, label_optimizer, list(weights), weight_optimizer, new_classifier, scale,
            scale_optimizer)
