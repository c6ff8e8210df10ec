"""The CIFAR-style ResNet of docs/method.md section 4 ("ResNet-18" in the paper)."""

from __future__ import annotations

import keras

from kerasdistill.models.registry import (input_dtype, layer_dtype, layer_seeds,
                                          register_architecture, torch_style_initializers)

# PyTorch's BatchNorm momentum 0.1 is Keras's 0.9: evaluation models train for a
# few hundred steps only, too few for Keras's default 0.99 to settle.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def build_resnet(input_shape: tuple, num_classes: int, seed: int = 0,
                 precision: str = "float32") -> keras.Model:
    """3x3 conv 16 - BN - ReLU, three stages of two basic blocks (16, 32, 64
    channels; stride 2 and a 1x1 projection shortcut where the shape changes),
    global average pooling (64 features for LD RR), dense C.

    As in the authors' code: batch norm normalises with batch statistics in every
    call, training and prediction alike (the solvers call it so, see
    `uses_batch_statistics`); convolutions start normal with std sqrt(2 / (k*k*C_out))
    (He, fan-out), batch norm at scale 1 and offset 0, the dense layer at PyTorch's
    default; stride-2 3x3 convolutions pad one pixel on every side like PyTorch's
    `padding=1` (TensorFlow's "same" pads 0 before and 1 after on even inputs, which
    would misalign the residual sum against the 1x1 stride-2 shortcut by a pixel).

    Example:
      >>> build_resnet((32, 32, 3), num_classes=10).output_shape
      (None, 10)
    """
    conv, dense = layer_dtype(precision, "conv"), layer_dtype(precision, "dense")
    seeds = iter(layer_seeds(seed, 32))

    def conv_bn(x, filters, kernel, stride, name, relu=True):
        padding = "same"
        if stride > 1 and kernel > 1:
            x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad", dtype=conv)(x)
            padding = "valid"
        x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                                name=f"{name}_conv", dtype=conv,
                                kernel_initializer=keras.initializers.VarianceScaling(
                                    2.0, mode="fan_out", distribution="untruncated_normal",
                                    seed=next(seeds)))(x)
        x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                            name=f"{name}_bn", dtype=conv)(x)
        return keras.layers.ReLU(name=f"{name}_relu", dtype=conv)(x) if relu else x

    inputs = keras.Input(input_shape, dtype=input_dtype(precision))
    x = conv_bn(inputs, 16, 3, 1, "stem")
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            name = f"stage{stage}_block{block}"
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, 1, stride, f"{name}_shortcut", relu=False)
            y = conv_bn(x, filters, 3, stride, f"{name}_a")
            y = conv_bn(y, filters, 3, 1, f"{name}_b", relu=False)
            x = keras.layers.Add(name=f"{name}_add", dtype=conv)([shortcut, y])
            x = keras.layers.ReLU(name=f"{name}_out", dtype=conv)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool", dtype=dense)(x)
    outputs = keras.layers.Dense(num_classes, name="classifier", dtype=dense,
                                 **torch_style_initializers(64, next(seeds)))(x)
    return keras.Model(inputs, outputs, name="resnet")


register_architecture("resnet", build_resnet)
