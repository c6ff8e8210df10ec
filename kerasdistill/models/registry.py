"""Architectures by name, so the algorithms never import a model directly."""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from kerasdistill.errors import DistillError
from kerasdistill.seeding import MODEL_INIT, rng_for

# build(input_shape, num_classes, seed, precision) -> a built keras.Model whose
# last layer is the Dense classifier (the ridge-regression solver replaces it).
BuildFn = Callable[[tuple, int, int, str], keras.Model]

# "float32" and "float64" compute everything in that type. "mixed_conv_bfloat16"
# runs convolutions (and their pooling) in bfloat16 with float32 weights, and the
# dense head in float32: on CPUs with AVX512-BF16 the convolutions, which are most
# of LeNet's and AlexNet's cost, run about twice as fast, while the loss and the
# classifier stay in float32 (BUILD_NOTES.md gives the measured error).
PRECISIONS = ("float32", "float64", "mixed_conv_bfloat16")


def layer_dtype(precision: str, kind: str) -> str:
    """The Keras dtype policy for a layer of `kind` ("conv" or "dense")."""
    if precision not in PRECISIONS:
        raise DistillError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "mixed_conv_bfloat16":
        return "mixed_bfloat16" if kind == "conv" else "float32"
    return precision


def input_dtype(precision: str) -> str:
    return "float64" if precision == "float64" else "float32"

_ARCHITECTURES: dict[str, BuildFn] = {}


def register_architecture(name: str, build: BuildFn) -> BuildFn:
    if name in _ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is already registered")
    _ARCHITECTURES[name] = build
    return build


def architecture_names() -> list[str]:
    return sorted(_ARCHITECTURES)


def build_model(name: str, input_shape: tuple, num_classes: int, seed: int = 0,
                precision: str = "float32") -> keras.Model:
    """Builds architecture `name` with freshly initialised, seeded weights."""
    try:
        build = _ARCHITECTURES[name]
    except KeyError:
        raise DistillError(
            f"unknown architecture {name!r}; known: {', '.join(architecture_names())}") from None
    layer_dtype(precision, "conv")  # validates precision
    return build(tuple(input_shape), num_classes, seed, precision)


def layer_seeds(seed: int, count: int) -> list[int]:
    """Distinct per-layer initialiser seeds derived from one model seed."""
    return [int(s) for s in rng_for(seed, MODEL_INIT).integers(0, 2**31 - 1, size=count)]


def torch_style_initializers(fan_in: int, seed: int) -> dict:
    """Kernel and bias initialisers equal in distribution to PyTorch's defaults
    for Conv2d/Linear (uniform in +-1/sqrt(fan_in)), which the paper's numbers were
    obtained with; Keras's Glorot default trains these small nets differently."""
    bound = 1.0 / float(np.sqrt(fan_in))
    return {
        "kernel_initializer": keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound, seed=seed + 1),
    }


@dataclasses.dataclass(frozen=True)
class ModelFactory:
    """Makes fresh models of one architecture for one task.

    `template` is built once and run with explicit weights through
    `stateless_call`; `initial_weights(seed)` gives new trainable and
    non-trainable values for a model reset or an evaluation model.
    """

    architecture: str
    input_shape: tuple
    num_classes: int
    precision: str = "float32"

    def with_precision(self, precision: str | None) -> "ModelFactory":
        """The same architecture in another precision (None: this one)."""
        if precision is None or precision == self.precision:
            return self
        layer_dtype(precision, "conv")  # validates
        return dataclasses.replace(self, precision=precision)

    def build(self, seed: int = 0) -> keras.Model:
        return build_model(self.architecture, self.input_shape, self.num_classes, seed,
                           self.precision)

    def initial_weights(self, seed: int):
        return _weight_tensors(self.build(seed))

    def build_feature_extractor(self, seed: int = 0) -> keras.Model:
        """The model without its last (classifier) layer: g_theta of docs/method.md section 2b."""
        return feature_extractor(self.build(seed))

    def initial_feature_weights(self, seed: int):
        return _weight_tensors(self.build_feature_extractor(seed))


def _weight_tensors(model: keras.Model):
    """(trainable, non-trainable) values as tensors, not the model's variables: a
    compiled function called first with variables and then with tensors would be
    traced twice (the loop's stretch and the evaluation models were), and holding the
    variables would keep every throwaway model alive."""
    return ([tf.convert_to_tensor(v.value) for v in model.trainable_variables],
            [tf.convert_to_tensor(v.value) for v in model.non_trainable_variables])


def feature_extractor(model: keras.Model) -> keras.Model:
    """Shares `model`'s layers up to the classifier; outputs the penultimate features."""
    return keras.Model(model.inputs, model.layers[-2].output, name=f"{model.name}_features")
