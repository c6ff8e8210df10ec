"""The pure Adam and the label projection against closed forms."""

import numpy as np
import tensorflow as tf

from kerasdistill.distill.meta_step import project_to_simplex_rows, uniform_labels
from kerasdistill.training.adam import adam_init, adam_update


def _numpy_adam(param, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = v = np.zeros_like(param)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        param = param - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return param


def test_adam_matches_pytorch_formula():
    rng = np.random.default_rng(0)
    param = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(5)]
    params, state = (tf.constant(param),), adam_init([tf.constant(param)])
    for g in grads:
        params, state = adam_update(params, [tf.constant(g)], state, 1e-2)
    np.testing.assert_allclose(params[0].numpy(), _numpy_adam(param, grads, 1e-2), rtol=1e-12)
    assert float(state.step) == 5


def test_projection_clips_and_renormalises_rows():
    labels = tf.constant([[0.5, -0.2, 0.9], [2.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])
    projected = project_to_simplex_rows(labels).numpy()
    np.testing.assert_allclose(projected[0], [0.5 / 1.4, 0.0, 0.9 / 1.4], rtol=1e-6)
    np.testing.assert_allclose(projected[1], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(projected[2], [1 / 3] * 3, rtol=1e-6)  # no NaN for a zero row
    np.testing.assert_allclose(projected.sum(1), 1.0, rtol=1e-6)


def test_labels_start_uniform():
    labels = uniform_labels(4, 10).numpy()
    np.testing.assert_allclose(labels, 0.1)
