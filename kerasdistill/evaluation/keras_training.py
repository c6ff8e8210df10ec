"""Ordinary Keras training on soft labels: `model.compile` / `model.fit` / `model.evaluate`.

What a user of a shared distilled set does, with nothing of the meta-learning
machinery involved. Serves optimizer transfer (docs/method.md section 5.4) and `experiments.train`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdistill.config import OPTIMIZERS as OPTIMIZER_NAMES
from kerasdistill.errors import DistillError

# The Keras optimizer behind each name of config.OPTIMIZERS, with its usual learning rate.
_KERAS_OPTIMIZERS = {
    "sgd": (keras.optimizers.SGD, 0.01, {}),
    "sgd_momentum": (keras.optimizers.SGD, 0.01, {"momentum": 0.9}),
    "adam": (keras.optimizers.Adam, 1e-3, {}),
    "rmsprop": (keras.optimizers.RMSprop, 1e-3, {}),
}
OPTIMIZERS = {name: _KERAS_OPTIMIZERS[name] for name in OPTIMIZER_NAMES}


def default_learning_rate(optimizer_name: str) -> float:
    _check_optimizer(optimizer_name)
    return OPTIMIZERS[optimizer_name][1]


def _check_optimizer(optimizer_name: str):
    if optimizer_name not in OPTIMIZERS:
        raise DistillError(f"unknown optimizer {optimizer_name!r}; known: {', '.join(OPTIMIZERS)}")


def make_optimizer(optimizer_name: str, learning_rate: float | None = None):
    """A fresh Keras optimizer; learning_rate None: the optimizer's usual one."""
    _check_optimizer(optimizer_name)
    cls, default_rate, extra = OPTIMIZERS[optimizer_name]
    return cls(learning_rate=default_rate if learning_rate is None else learning_rate, **extra)


def fit_on_soft_labels(model: keras.Model, dataset: tf.data.Dataset, num_steps: int,
                       optimizer, callbacks=(), verbose: int = 0) -> keras.Model:
    """Trains `model` for num_steps batches of `dataset` with soft-label cross-entropy."""
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(dataset, epochs=1, steps_per_epoch=max(int(num_steps), 1), shuffle=False,
              callbacks=list(callbacks), verbose=verbose)
    return model


def evaluate_accuracy(model: keras.Model, images, labels, batch_size: int = 2000) -> float:
    """Accuracy on integer labels with `model.evaluate`."""
    # Recompiled for evaluation: test labels are class indices, not distributions.
    model.compile(metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return float(model.evaluate(images, labels, batch_size=batch_size, verbose=0,
                                return_dict=True)["accuracy"])
