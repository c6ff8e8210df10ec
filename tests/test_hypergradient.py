"""The label hypergradient against float64 finite differences, and against the
plain-TensorFlow reference step."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill.meta_step import init_meta_state, make_meta_step
from kerasdistill.distill.plain_reference import plain_meta_step
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.models import ModelFactory
from kerasdistill.training.adam import adam_init


def _problem(dtype, inner=4, outer=16, seed=0, shape=(28, 28, 1)):
    rng = np.random.default_rng(seed)
    inner_images = tf.constant(rng.normal(size=(inner, *shape)), dtype)
    outer_images = tf.constant(rng.normal(size=(outer, *shape)), dtype)
    outer_labels = tf.constant(rng.integers(0, 10, outer), tf.int32)
    labels = rng.uniform(0.05, 1.0, size=(inner, 10))
    labels = tf.constant(labels / labels.sum(1, keepdims=True), dtype)
    return inner_images, labels, outer_images, outer_labels


def hypergradient_and_finite_differences(solver, learner, inner_images, labels, outer_images,
                                         outer_labels, eps: float):
    """(the solver's label hypergradient, its central finite differences in `labels`)."""
    analytic = solver.meta_gradient(learner, inner_images, labels, outer_images,
                                    outer_labels).inner_label_grad.numpy()

    @tf.function
    def outer_loss(perturbed):
        return solver.meta_gradient(learner, inner_images, perturbed, outer_images,
                                    outer_labels).outer_loss

    numeric = np.zeros_like(analytic)
    base = labels.numpy()
    for index in np.ndindex(*base.shape):
        plus, minus = base.copy(), base.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (float(outer_loss(tf.constant(plus))) -
                          float(outer_loss(tf.constant(minus)))) / (2 * eps)
    return analytic, numeric


@pytest.mark.parametrize("architecture,shape,mode", [
    ("lenet", (28, 28, 1), "forward"), ("lenet", (28, 28, 1), "reverse"),
    # Small images keep the float64 checks of the bigger networks quick; the layers
    # that matter (LRN, batch norm, instance norm) are the same at any size.
    ("alexnet", (8, 8, 3), "forward"), ("resnet", (8, 8, 3), "forward"),
    ("convnet", (8, 8, 1), "forward")])
def test_second_order_hypergradient_matches_finite_differences(architecture, shape, mode):
    factory = ModelFactory(architecture, shape, 10, precision="float64")
    # A large inner step makes the second-order term clearly visible.
    solver = UnrolledSGDSolver(factory, inner_learning_rate=0.5, hypergradient=mode,
                               outer_splits=1 if architecture == "resnet" else 2)
    learner = solver.init_learner(seed=3)
    inner_images, labels, outer_images, outer_labels = _problem(tf.float64, shape=shape)

    # Small steps: with few images, batch norm and ReLU kinks lie within 1e-5 of the
    # labels (the ResNet check misses by 0.2% at eps = 1e-6, agrees to 1e-9 at 1e-7).
    analytic, numeric = hypergradient_and_finite_differences(
        solver, learner, inner_images, labels, outer_images, outer_labels, eps=1e-7)
    assert np.abs(numeric).max() > 1e-4, "the check needs a non-trivial gradient"
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_meta_step_equals_plain_reference_step():
    """Same inputs, same update: the Keras step and the plain-TF step agree."""
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    solver = UnrolledSGDSolver(factory, outer_splits=2)
    rng = np.random.default_rng(1)
    base_images = tf.constant(rng.normal(size=(12, 28, 28, 1)), tf.float64)
    inner_indices = tf.constant([3, 0, 7, 11, 5, 2], tf.int32)
    _, _, outer_images, outer_labels = _problem(tf.float64, outer=32)
    soft_labels = tf.constant(rng.dirichlet(np.ones(10), size=12), tf.float64)
    state = init_meta_state(solver, soft_labels, seed=5)
    new_state, _ = make_meta_step(solver)(state, base_images, inner_indices, outer_images,
                                          outer_labels)
    weights = list(state.learner.weights)
    labels, _, new_weights, _ = plain_meta_step(
        soft_labels, adam_init([soft_labels]), weights, adam_init(weights), base_images,
        inner_indices, outer_images, outer_labels)
    np.testing.assert_allclose(new_state.soft_labels.numpy(), labels.numpy(), rtol=1e-9,
                               atol=1e-12)
    for ours, theirs in zip(new_state.learner.weights, new_weights):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-12)
    # The step must actually move the labels off their start.
    assert np.abs(new_state.soft_labels.numpy() - soft_labels.numpy()).max() > 1e-5


def test_mixed_precision_outer_pass_stays_close_to_float32():
    """The opt-in mixed precision runs the outer convolutions in bfloat16: its
    hypergradient must stay within a few percent of float32's."""
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    exact = UnrolledSGDSolver(factory, outer_precision="float32")
    mixed = UnrolledSGDSolver(factory, outer_precision="mixed_conv_bfloat16")
    learner = exact.init_learner(seed=0)
    rng = np.random.default_rng(0)
    # Image-like inputs (smooth blobs), a realistic outer batch.
    outer_images = tf.constant(rng.normal(size=(256, 28, 28, 1)).cumsum(1).cumsum(2) / 20,
                               tf.float32)
    outer_labels = tf.constant(rng.integers(0, 10, 256), tf.int32)
    inner_images = outer_images[:20]
    labels = tf.constant(rng.dirichlet(np.ones(10), size=20), tf.float32)
    reference = exact.meta_gradient(learner, inner_images, labels, outer_images,
                                    outer_labels).inner_label_grad.numpy()
    approx = mixed.meta_gradient(learner, inner_images, labels, outer_images,
                                 outer_labels).inner_label_grad.numpy()
    relative_error = np.linalg.norm(approx - reference) / np.linalg.norm(reference)
    assert relative_error < 0.05, relative_error
