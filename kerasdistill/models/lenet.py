"""LeNet as in docs/method.md section 4, for 28x28 greyscale and 32x32 colour inputs."""

from __future__ import annotations

import keras

from kerasdistill.models.registry import (input_dtype, layer_dtype, layer_seeds,
                                          register_architecture, torch_style_initializers)


def build_lenet(input_shape: tuple, num_classes: int, seed: int = 0,
                precision: str = "float32") -> keras.Model:
    """conv 6@5x5 - ReLU - maxpool 2 - conv 16@5x5 - ReLU - maxpool 2 -
    dense 120 - ReLU - dense 84 - ReLU - dense C.

    The first convolution pads to keep 28x28 inputs at 28x28 (so both input sizes
    reach the dense layers as 5x5x16), as in the reference implementation.

    Example:
      >>> model = build_lenet((28, 28, 1), num_classes=10, seed=0)
      >>> model.output_shape
      (None, 10)
    """
    height, _, channels = input_shape
    first_padding = "same" if height == 28 else "valid"
    seeds = layer_seeds(seed, 5)
    conv, dense = layer_dtype(precision, "conv"), layer_dtype(precision, "dense")
    layers = [
        keras.layers.Conv2D(6, 5, padding=first_padding, activation="relu", name="conv1",
                            dtype=conv, **torch_style_initializers(5 * 5 * channels, seeds[0])),
        keras.layers.MaxPooling2D(2, name="pool1", dtype=conv),
        keras.layers.Conv2D(16, 5, activation="relu", name="conv2", dtype=conv,
                            **torch_style_initializers(5 * 5 * 6, seeds[1])),
        keras.layers.MaxPooling2D(2, name="pool2", dtype=conv),
        keras.layers.Flatten(name="flatten", dtype=dense),
        keras.layers.Dense(120, activation="relu", name="fc1", dtype=dense,
                           **torch_style_initializers(16 * 5 * 5, seeds[2])),
        keras.layers.Dense(84, activation="relu", name="fc2", dtype=dense,
                           **torch_style_initializers(120, seeds[3])),
        keras.layers.Dense(num_classes, name="classifier", dtype=dense,
                           **torch_style_initializers(84, seeds[4])),
    ]
    model = keras.Sequential([keras.Input(input_shape, dtype=input_dtype(precision)), *layers],
                             name="lenet")
    return model


register_architecture("lenet", build_lenet)
