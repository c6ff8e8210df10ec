"""Keras layers of the first-order algorithm: closed-form ridge regression and a scale."""

from __future__ import annotations

import keras
import tensorflow as tf


def _float_policy(dtype) -> str:
    """float64 when asked for explicitly; float32 for anything else, mixed and
    low-precision policies included: the solve needs float32 at least."""
    name = keras.DTypePolicy(dtype).name if dtype is not None else "float32"
    return "float64" if name == "float64" else "float32"


@keras.saving.register_keras_serializable(package="kerasdistill")
class RidgeRegression(keras.layers.Layer):
    """Closed-form ridge regression, differentiable in features and targets.

    Given features Phi (n x d) and targets Y (n x C), returns the weights
    W ((d + 1) x C when `add_bias`, else d x C) minimising
    ||[Phi, 1] W - Y||^2 + l2 ||W||^2, in the dual form

        W = Phi^T (Phi Phi^T + l2 I)^-1 Y

    solved by a Cholesky factorisation of the n x n Gram matrix (never an explicit
    inverse). Cost: O(n^2 d + n^3 + n d C) for n examples, d features, C classes;
    the dual form suits few examples and many features (n_i = 50, d = 85 here).
    Gradients flow to both Phi and Y (TensorFlow differentiates Cholesky and
    triangular solves).

    The layer always computes in float32 (float64 when its dtype is float64), also
    under a mixed-precision policy: the Gram matrix's condition number makes
    bfloat16 and float16 solves meaningless.

    Example:
      >>> import numpy as np
      >>> features = np.random.rand(50, 84).astype("float32")
      >>> targets = np.eye(10, dtype="float32")[np.arange(50) % 10]
      >>> weights = RidgeRegression(l2=1.0)(features, targets)
      >>> weights.shape
      TensorShape([85, 10])
    """

    def __init__(self, l2: float = 1.0, add_bias: bool = True, **kwargs):
        kwargs["dtype"] = _float_policy(kwargs.get("dtype"))
        super().__init__(**kwargs)
        if l2 <= 0:
            raise ValueError(f"l2 must be positive (the Gram matrix must be invertible), got {l2}")
        self.l2 = float(l2)
        self.add_bias = bool(add_bias)

    def call(self, features, targets):
        dtype = self.compute_dtype
        features = tf.cast(features, dtype)
        targets = tf.cast(targets, dtype)
        if self.add_bias:
            features = append_bias_column(features)
        gram = tf.matmul(features, features, transpose_b=True)
        gram += self.l2 * tf.eye(tf.shape(features)[0], dtype=dtype)
        dual = tf.linalg.cholesky_solve(tf.linalg.cholesky(gram), targets)
        return tf.matmul(features, dual, transpose_a=True)

    def compute_output_shape(self, features_shape, targets_shape):
        extra = 1 if self.add_bias else 0
        return (features_shape[-1] + extra, targets_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"l2": self.l2, "add_bias": self.add_bias})
        return config


@keras.saving.register_keras_serializable(package="kerasdistill")
class Scale(keras.layers.Layer):
    """Multiplies its input by one learned scalar (the RR classifier's calibration).

    Example:
      >>> layer = Scale(initial_value=1.0)
      >>> layer(np.ones((2, 3), "float32")).shape
      TensorShape([2, 3])
    """

    def __init__(self, initial_value: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_value = float(initial_value)

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale", shape=(), initializer=keras.initializers.Constant(self.initial_value))

    def call(self, inputs):
        return inputs * tf.cast(self.scale, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"initial_value": self.initial_value})
        return config


def append_bias_column(features):
    """[Phi, 1]: features with a column of ones appended."""
    ones = tf.ones_like(features[:, :1])
    return tf.concat([features, ones], axis=-1)
