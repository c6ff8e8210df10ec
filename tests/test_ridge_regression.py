"""The ridge-regression layer against numpy, and the LD RR label gradient against
finite differences."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill.ridge_regression import RidgeRegressionSolver
from kerasdistill.layers import RidgeRegression, Scale
from kerasdistill.models import ModelFactory


def _numpy_ridge(features, targets, l2):
    phi = np.concatenate([features, np.ones((len(features), 1))], axis=1).astype(np.float64)
    # Primal form, a different formula from the layer's dual one: same minimiser.
    return np.linalg.solve(phi.T @ phi + l2 * np.eye(phi.shape[1]), phi.T @ targets)


@pytest.mark.parametrize("n,d,classes", [(10, 84, 10), (50, 84, 10), (50, 192, 100), (7, 3, 2)])
@pytest.mark.parametrize("l2", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ridge_layer_matches_numpy_closed_form(n, d, classes, l2, dtype):
    rng = np.random.default_rng(n + d)
    features = rng.normal(size=(n, d))
    targets = rng.dirichlet(np.ones(classes), size=n)
    weights = RidgeRegression(l2=l2, dtype=dtype)(features.astype(dtype), targets.astype(dtype))
    assert weights.dtype == dtype and weights.shape == (d + 1, classes)
    tolerance = 1e-10 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(weights.numpy(), _numpy_ridge(features, targets, l2),
                               rtol=tolerance, atol=tolerance)


def test_ridge_layer_computes_in_float32_under_mixed_precision():
    layer = RidgeRegression(l2=1.0, dtype="mixed_bfloat16")
    features = tf.constant(np.random.default_rng(0).normal(size=(20, 30)), tf.bfloat16)
    targets = tf.constant(np.eye(5)[np.arange(20) % 5], tf.bfloat16)
    weights = layer(features, targets)
    assert layer.compute_dtype == "float32" and weights.dtype == tf.float32
    expected = _numpy_ridge(tf.cast(features, tf.float64).numpy(),
                            tf.cast(targets, tf.float64).numpy(), 1.0)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=2e-4, atol=2e-4)


def test_ridge_layer_is_differentiable_in_features_and_targets():
    rng = np.random.default_rng(1)
    features = tf.constant(rng.normal(size=(6, 4)))
    targets = tf.constant(rng.normal(size=(6, 3)))
    layer = RidgeRegression(l2=0.5, dtype="float64")
    theoretical, numerical = tf.test.compute_gradient(
        lambda f, t: layer(f, t), [features, targets])
    for analytic, numeric in zip(theoretical, numerical):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_layers_serialise():
    layer = RidgeRegression(l2=2.5, add_bias=False, name="rr")
    clone = RidgeRegression.from_config(layer.get_config())
    assert (clone.l2, clone.add_bias, clone.name) == (2.5, False, "rr")
    scale = Scale(initial_value=3.0)
    assert float(scale(np.ones((1, 2), "float32"))[0, 0]) == 3.0
    assert Scale.from_config(scale.get_config()).initial_value == 3.0
    with pytest.raises(ValueError, match="l2 must be positive"):
        RidgeRegression(l2=0.0)
    assert isinstance(keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)), RidgeRegression)


def test_rr_label_gradient_matches_finite_differences():
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    # A large pseudo-gradient rate makes the label's effect on W large.
    solver = RidgeRegressionSolver(factory, pseudo_gradient_rate=0.5)
    rng = np.random.default_rng(0)
    learner = solver.init_learner(seed=2)
    learner = learner._replace(classifier=tf.constant(rng.normal(size=(85, 10)) * 0.1))
    inner_images = tf.constant(rng.normal(size=(6, 28, 28, 1)))
    outer_images = tf.constant(rng.normal(size=(16, 28, 28, 1)))
    outer_labels = tf.constant(rng.integers(0, 10, 16), tf.int32)
    labels = rng.dirichlet(np.ones(10), size=6)

    def outer_loss(values):
        return float(solver.meta_gradient(learner, inner_images, tf.constant(values),
                                          outer_images, outer_labels).outer_loss)

    analytic = solver.meta_gradient(learner, inner_images, tf.constant(labels), outer_images,
                                    outer_labels).inner_label_grad.numpy()
    numeric = np.zeros_like(labels)
    eps = 1e-6
    for index in np.ndindex(*labels.shape):
        plus, minus = labels.copy(), labels.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (outer_loss(plus) - outer_loss(minus)) / (2 * eps)
    assert np.abs(numeric).max() > 1e-4
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)


def test_rr_meta_step_equals_the_plain_tf_reference_step():
    """One LD RR meta step against plain_ridge_meta_step: the reference code's order
    (ridge solve with the current labels, label update, then theta and s trained on the
    updated labels), written with tf.nn ops, tf.linalg.solve and no Keras."""
    from kerasdistill.distill.meta_step import init_meta_state, make_meta_step
    from kerasdistill.distill.plain_reference import plain_ridge_meta_step
    from kerasdistill.training.adam import adam_init
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    solver = RidgeRegressionSolver(factory, outer_splits=2)
    rng = np.random.default_rng(3)
    base_images = tf.constant(rng.normal(size=(12, 28, 28, 1)))
    inner_indices = tf.constant([3, 0, 7, 11, 5, 2], tf.int32)
    outer_images = tf.constant(rng.normal(size=(32, 28, 28, 1)))
    outer_labels = tf.constant(rng.integers(0, 10, 32), tf.int32)
    soft_labels = tf.constant(rng.dirichlet(np.ones(10), size=12))
    state = init_meta_state(solver, soft_labels, seed=5)
    # A classifier and scale away from their starts, so every term of the step counts.
    learner = state.learner._replace(classifier=tf.constant(rng.normal(size=(85, 10)) * 0.1),
                                     scale=tf.constant(1.3, tf.float64))
    for _ in range(2):  # Adam's moments past their first step: updates follow g smoothly
        learner = solver.train_step(learner, base_images[:6], soft_labels[:6])
    state = state._replace(learner=learner)
    new_state, _ = make_meta_step(solver)(state, base_images, inner_indices, outer_images,
                                          outer_labels)
    labels, _, weights, _, classifier, scale, _ = plain_ridge_meta_step(
        soft_labels, adam_init([soft_labels]), list(learner.weights), learner.optimizer,
        learner.classifier, learner.scale, learner.scale_optimizer, base_images, inner_indices,
        outer_images, outer_labels)
    tight = dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(new_state.soft_labels.numpy(), labels.numpy(), **tight)
    np.testing.assert_allclose(new_state.learner.classifier.numpy(), classifier.numpy(), **tight)
    np.testing.assert_allclose(float(new_state.learner.scale), float(scale), **tight)
    for ours, theirs in zip(new_state.learner.weights, weights):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), **tight)
    # The order matters: theta trained on the labels before the update differs.
    before = solver.train_step(learner, tf.gather(base_images, inner_indices),
                               tf.gather(soft_labels, inner_indices))
    assert max(np.abs(a.numpy() - b.numpy()).max()
               for a, b in zip(before.weights, new_state.learner.weights)) > 1e-9
    assert np.abs(new_state.soft_labels.numpy() - soft_labels.numpy()).max() > 1e-5
