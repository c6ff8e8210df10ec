"""Local response normalisation written from differentiable ops."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="kerasdistill")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalisation, PyTorch's definition:

        b_c = a_c / (k + alpha / size * sum_{c' = c - size//2}^{c + (size-1)//2} a_c'^2) ^ beta

    (channels-last; out-of-range channels count as zero). TensorFlow's built-in
    `tf.nn.local_response_normalization` has a symmetric window and no 1/size, and
    its gradient op (LRNGrad) has no gradient of its own, so second-order
    meta-learning cannot differentiate through it twice. This layer uses squares,
    a padded sum and a power only, all twice differentiable.

    Example:
      >>> layer = LocalResponseNormalization(size=4, alpha=0.001 / 9, beta=0.75, k=1.0)
      >>> layer(np.ones((1, 8, 8, 64), "float32")).shape
      TensorShape([1, 8, 8, 64])
    """

    def __init__(self, size: int = 4, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def call(self, inputs):
        squares = tf.square(inputs)
        before, after = self.size // 2, (self.size - 1) // 2
        padded = tf.pad(squares, [[0, 0]] * (len(inputs.shape) - 1) + [[before, after]])
        channels = tf.shape(inputs)[-1]
        window_sum = tf.add_n([padded[..., offset:offset + channels]
                               for offset in range(self.size)])
        return inputs * tf.pow(self.k + (self.alpha / self.size) * window_sum, -self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k})
        return config
