"""AlexNet, CIFAR variant (docs/method.md section 4)."""

from __future__ import annotations

import keras

from kerasdistill.layers.lrn import LocalResponseNormalization
from kerasdistill.models.registry import (input_dtype, layer_dtype, layer_seeds,
                                          register_architecture, torch_style_initializers)


def build_alexnet(input_shape: tuple, num_classes: int, seed: int = 0,
                  precision: str = "float32") -> keras.Model:
    """conv 64@5x5 - ReLU - maxpool 3/2 - LRN - conv 64@5x5 - ReLU - LRN - maxpool 3/2 -
    dense 384 - ReLU - dense 192 - ReLU - dense C (192 features for LD RR).

    LRN (size 4, alpha 0.001/9, beta 0.75, k 1) is our differentiable layer, so
    second-order LD can differentiate through it twice.

    Example:
      >>> build_alexnet((32, 32, 3), num_classes=10).output_shape
      (None, 10)
    """
    channels = input_shape[-1]
    seeds = layer_seeds(seed, 5)
    conv, dense = layer_dtype(precision, "conv"), layer_dtype(precision, "dense")

    def lrn(name):
        return LocalResponseNormalization(4, alpha=0.001 / 9.0, beta=0.75, k=1.0, name=name,
                                          dtype=conv)

    height, width = input_shape[0], input_shape[1]
    flat = 64 * (-(-height // 4)) * (-(-width // 4))  # two padded stride-2 pools: ceil(h / 4)
    layers = [
        keras.layers.Conv2D(64, 5, padding="same", activation="relu", name="conv1", dtype=conv,
                            **torch_style_initializers(5 * 5 * channels, seeds[0])),
        # PyTorch's MaxPool2d(3, 2, padding=1) pads one pixel on every side; "same"
        # would pad 0 before and 1 after, shifting every window by a pixel. Zeros
        # pad like -inf here: the inputs are non-negative (after ReLU, and LRN of it).
        keras.layers.ZeroPadding2D(1, name="pool1_pad", dtype=conv),
        keras.layers.MaxPooling2D(3, strides=2, name="pool1", dtype=conv),
        lrn("lrn1"),
        keras.layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2", dtype=conv,
                            **torch_style_initializers(5 * 5 * 64, seeds[1])),
        lrn("lrn2"),
        keras.layers.ZeroPadding2D(1, name="pool2_pad", dtype=conv),
        keras.layers.MaxPooling2D(3, strides=2, name="pool2", dtype=conv),
        keras.layers.Flatten(name="flatten", dtype=dense),
        keras.layers.Dense(384, activation="relu", name="fc1", dtype=dense,
                           **torch_style_initializers(flat, seeds[2])),
        keras.layers.Dense(192, activation="relu", name="fc2", dtype=dense,
                           **torch_style_initializers(384, seeds[3])),
        keras.layers.Dense(num_classes, name="classifier", dtype=dense,
                           **torch_style_initializers(192, seeds[4])),
    ]
    return keras.Sequential([keras.Input(input_shape, dtype=input_dtype(precision)), *layers],
                            name="alexnet")


register_architecture("alexnet", build_alexnet)
