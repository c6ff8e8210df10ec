"""The ConvNet of the dataset-distillation literature (docs/method.md section 4).

Not in the paper: it is the network that dataset condensation, MTT and KIP evaluate
with, so that our numbers can stand beside theirs.
"""

from __future__ import annotations

import keras

from kerasdistill.models.registry import (input_dtype, layer_dtype, layer_seeds,
                                          register_architecture, torch_style_initializers)

CONVNET_WIDTH = 128
CONVNET_DEPTH = 3
# PyTorch's InstanceNorm/GroupNorm epsilon (Keras's default is 1e-3).
_NORM_EPSILON = 1e-5


def build_convnet(input_shape: tuple, num_classes: int, seed: int = 0,
                  precision: str = "float32") -> keras.Model:
    """3 blocks of conv 128@3x3 same - instance norm (per channel, affine) - ReLU -
    average pool 2, then flatten (the features of LD RR: 128 * 3 * 3 for 28x28 inputs,
    128 * 4 * 4 for 32x32) and dense C.

    Instance normalisation is GroupNormalization with one group per channel: its
    statistics are each image's own, so the model behaves the same in training and
    at prediction, and an outer batch split into shards changes nothing.
    Initialisation is PyTorch's default (uniform +-1/sqrt(fan_in)), norm scale 1 and
    offset 0, as in the dataset-condensation code.

    Example:
      >>> build_convnet((32, 32, 3), num_classes=10).count_params()
      320010
    """
    conv, dense = layer_dtype(precision, "conv"), layer_dtype(precision, "dense")
    seeds = iter(layer_seeds(seed, CONVNET_DEPTH + 1))
    layers, channels = [], input_shape[-1]
    for block in range(1, CONVNET_DEPTH + 1):
        layers += [
            keras.layers.Conv2D(CONVNET_WIDTH, 3, padding="same", name=f"conv{block}",
                                dtype=conv,
                                **torch_style_initializers(3 * 3 * channels, next(seeds))),
            keras.layers.GroupNormalization(groups=CONVNET_WIDTH, epsilon=_NORM_EPSILON,
                                            name=f"norm{block}", dtype=conv),
            keras.layers.ReLU(name=f"relu{block}", dtype=conv),
            keras.layers.AveragePooling2D(2, name=f"pool{block}", dtype=conv),
        ]
        channels = CONVNET_WIDTH
    height, width = input_shape[0], input_shape[1]
    for _ in range(CONVNET_DEPTH):
        height, width = height // 2, width // 2
    layers += [
        keras.layers.Flatten(name="flatten", dtype=dense),
        keras.layers.Dense(num_classes, name="classifier", dtype=dense,
                           **torch_style_initializers(height * width * CONVNET_WIDTH,
                                                      next(seeds))),
    ]
    return keras.Sequential([keras.Input(input_shape, dtype=input_dtype(precision)), *layers],
                            name="convnet")


register_architecture("convnet", build_convnet)
