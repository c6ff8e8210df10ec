"""ZCA whitening as a Keras preprocessing layer (data/whitening.py says what it does)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasdistill.data.whitening import (DEFAULT_ZCA_REGULARIZATION, ZCAStatistics,
                                         check_zca_regularization)
from kerasdistill.errors import DistillError


@keras.saving.register_keras_serializable(package="kerasdistill")
class ZCAWhitening(keras.layers.Layer):
    """ZCA whitening of images: (flatten(x) - mean) @ W, reshaped back.

    Like `keras.layers.Normalization`: `adapt(images)` fits the mean and W on a
    training split, and they are non-trainable weights, so a model holding the layer
    saves and loads them. Until it is fitted (or its weights loaded) calling it is
    refused, rather than passing images through unwhitened.

    Args:
      regularization: added to every eigenvalue of the covariance, relative to their
        mean (KIP's 0.1).
      **kwargs: passed to `keras.layers.Layer`.

    Example:
      >>> import numpy as np
      >>> train = np.random.rand(500, 8, 8, 1).astype("float32")
      >>> whitening = ZCAWhitening(regularization=0.1)
      >>> whitening.adapt(train)
      >>> whitening(train[:4]).shape
      TensorShape([4, 8, 8, 1])
    """

    def __init__(self, regularization: float = DEFAULT_ZCA_REGULARIZATION, **kwargs):
        super().__init__(**kwargs)
        self.regularization = check_zca_regularization(regularization)
        self._fitted = False

    def build(self, input_shape):
        if any(dim is None for dim in input_shape[1:]):
            raise DistillError(f"ZCAWhitening needs images of a known shape, got "
                               f"{tuple(input_shape)}")
        size = int(np.prod(input_shape[1:]))
        self.mean = self.add_weight(name="mean", shape=(size,), initializer="zeros",
                                    trainable=False)
        self.whitening_matrix = self.add_weight(name="whitening_matrix", shape=(size, size),
                                                initializer="identity", trainable=False)
        # 1 once fitted, saved with the other weights: a layer saved before it was fitted
        # loads as unfitted, not as an identity whitening that passes images through.
        self.fitted = self.add_weight(name="fitted", shape=(), initializer="zeros",
                                      trainable=False)

    def adapt(self, images):
        """Fits the mean and W on `images` (N x H x W x C)."""
        images = np.asarray(images)
        self.set_statistics(ZCAStatistics.fit(images, self.regularization), images.shape[1:])

    def set_statistics(self, statistics: ZCAStatistics, image_shape):
        """Takes a fitted whitening (e.g. a distilled set's) for images of `image_shape`."""
        if not self.built:
            self.build((None, *tuple(image_shape)))
        if statistics.size != int(self.mean.shape[0]):
            raise DistillError(f"ZCA statistics for {statistics.size} values do not fit this "
                               f"layer's {int(self.mean.shape[0])}")
        self.mean.assign(statistics.mean)
        self.whitening_matrix.assign(statistics.matrix)
        self.fitted.assign(1.0)
        self.regularization = statistics.regularization
        self._fitted = True

    # Every way weights arrive (a .keras file, set_weights, a legacy weights file) sets
    # the variables; whether the layer may run follows the loaded `fitted` flag.
    def load_own_variables(self, store):
        super().load_own_variables(store)
        self._fitted = bool(self.fitted.numpy())

    def set_weights(self, weights):
        super().set_weights(weights)
        self._fitted = bool(self.fitted.numpy())

    def call(self, inputs):
        if not self._fitted:
            raise DistillError("ZCAWhitening has not been fitted: call adapt(training images) "
                               "or load its weights first")
        shape = tf.shape(inputs)
        flat = tf.reshape(tf.cast(inputs, self.compute_dtype), [shape[0], -1])
        whitened = tf.matmul(flat - tf.cast(self.mean, self.compute_dtype),
                             tf.cast(self.whitening_matrix, self.compute_dtype))
        return tf.reshape(whitened, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "regularization": self.regularization}
