"""Several copies of one network, each with its own weights, run as one computation.

The protocol trains 20 fresh test models (and as many per transfer setting) on
the same labels. One after another, each LeNet step on 50 images is a few small
ops whose dispatch costs as much as their arithmetic; stacked, the M models'
convolutions become one grouped convolution (each model a group of channels), their
dense layers one batched matmul and their Adam updates one op per weight, so the
work per op grows M-fold while the number of ops stays the same.

`tf.vectorized_map` cannot do this: its converter for Conv2D batches the input
only, and falls back to a while-loop over the models when the kernel differs per
model (TensorFlow's parallel_for/pfor.py).

Supported: sequential models of Conv2D (groups 1, no dilation, channels last),
MaxPooling2D, AveragePooling2D, ZeroPadding2D, LocalResponseNormalization, Flatten and Dense
layers without non-trainable weights, i.e. LeNet and AlexNet. Other models
(ResNet: batch norm and residual branches) train one at a time.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdistill.layers.lrn import LocalResponseNormalization

# Layers that act on each channel alone, so the stack runs them as they are.
_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.ZeroPadding2D)


def _conv_supported(layer) -> bool:
    return (layer.groups == 1 and tuple(layer.dilation_rate) == (1, 1)
            and layer.data_format == "channels_last" and layer.padding in ("same", "valid"))


def stackable(model: keras.Model) -> bool:
    """True when `ModelStack` can run `model`."""
    if not isinstance(model, keras.Sequential) or model.non_trainable_weights:
        return False
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            if type(layer) is not keras.layers.Conv2D or not _conv_supported(layer):
                return False
        elif not isinstance(layer, (*_POOLING, LocalResponseNormalization,
                                    keras.layers.Flatten, keras.layers.Dense)):
            return False
    return True


class ModelStack:
    """Runs M models of one sequential architecture at once.

    Weights are the model's trainable weights, each stacked on a new leading axis
    of length M (the order of `model.trainable_weights`). Images are M x B x H x W x C
    (each model its own batch, for training) or B x H x W x C (one batch for all,
    for measuring: the first convolution is then one ordinary convolution with M
    times the filters); logits come back M x B x classes.

    Example:
      >>> stack = ModelStack(build_lenet((28, 28, 1), 10))
      >>> logits = stack.logits([tf.stack([w, w]) for w in weights], images)  # 2 models
    """

    def __init__(self, model: keras.Model):
        if not stackable(model):
            raise ValueError(f"model {model.name} has layers ModelStack cannot stack")
        self.model = model

    def logits(self, stacked_weights, images: tf.Tensor) -> tf.Tensor:
        """M x B x classes logits of images M x B x H x W x C, or B x H x W x C shared."""
        weights = list(stacked_weights)
        num_models = weights[0].shape[0]
        if num_models is None:
            raise ValueError("ModelStack needs the number of models as a static shape")
        layers = list(self.model.layers)
        if images.shape.rank == 5:
            # Spatial layers see B x H x W x (M * C): model m owns channels m*C .. m*C + C - 1.
            x = tf.transpose(images, [1, 2, 3, 0, 4])
            x = tf.reshape(x, tf.concat([tf.shape(x)[:3], [-1]], 0))
        else:
            x = images  # shared: the grouped kernel below then acts as one convolution
            if not isinstance(layers[0], keras.layers.Conv2D):
                x = tf.tile(x, [1, 1, 1, num_models])
        return self._rest(layers, weights, x, num_models)

    @staticmethod
    def _conv(layer, weights, x):
        """The layer's convolution for all models (grouped when x has M groups of
        channels, ordinary when it has the layer's input channels); takes the kernel
        from `weights`."""
        kernel = weights.pop(0)
        k_h, k_w, c_in, _ = kernel.shape[1:]
        grouped = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [k_h, k_w, c_in, -1])
        return tf.nn.conv2d(x, grouped, list(layer.strides), layer.padding.upper())

    @staticmethod
    def _bias(layer, weights):
        return tf.reshape(weights.pop(0), [-1]) if layer.use_bias else 0.0

    def _rest(self, layers, weights, x, num_models):
        spatial = True
        for layer in layers:
            if isinstance(layer, keras.layers.Conv2D):
                x = self._conv(layer, weights, x)
                x = layer.activation(x + self._bias(layer, weights))
            elif isinstance(layer, _POOLING):
                x = layer(x)  # per channel: the groups stay apart
            elif isinstance(layer, LocalResponseNormalization):
                grouped = tf.reshape(x, tf.concat([tf.shape(x)[:3], [num_models, -1]], 0))
                x = tf.reshape(layer(grouped), tf.shape(x))  # across each model's channels
            elif isinstance(layer, keras.layers.Flatten):
                height, width, channels = x.shape[1], x.shape[2], x.shape[3]
                per_model = tf.reshape(x, [-1, height, width, num_models,
                                           channels // num_models])
                per_model = tf.transpose(per_model, [3, 0, 1, 2, 4])
                x = tf.reshape(per_model, [num_models, tf.shape(per_model)[1], -1])
                spatial = False
            else:  # Dense
                if spatial:
                    raise ValueError("a Dense layer before Flatten is not supported")
                kernel, bias = weights.pop(0), weights.pop(0) if layer.use_bias else None
                x = tf.matmul(x, kernel)
                if bias is not None:
                    x = x + bias[:, None, :]
                x = layer.activation(x)
        return x
