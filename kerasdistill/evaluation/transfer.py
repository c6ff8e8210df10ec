"""How far learned labels carry: other architectures, other optimizers, other step counts.

Optimizer transfer trains ordinary Keras models with `model.fit` on a tf.data
dataset of (base image, soft label), exactly as a user of a shared distilled set
would; nothing of the meta-learning machinery is involved.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasdistill.errors import DistillError
from kerasdistill.evaluation.training import EvaluationTrainer
from kerasdistill.models.registry import ModelFactory

# Off-the-shelf optimizers at their usual learning rates.
OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(learning_rate=0.01),
    "sgd_momentum": lambda: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(learning_rate=1e-3),
    "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate=1e-3),
}


def summary(accuracies) -> dict:
    return {"test_accuracy_mean": float(np.mean(accuracies)),
            "test_accuracy_std": float(np.std(accuracies)),
            "test_accuracies": [float(a) for a in accuracies]}


def distilled_dataset(base_images, soft_labels, batch_size: int, seed: int) -> tf.data.Dataset:
    """(base image, soft label) pairs, reshuffled every pass, repeated, batched."""
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.asarray(base_images, np.float32), np.asarray(soft_labels, np.float32)))
    dataset = dataset.shuffle(len(base_images), seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat().batch(batch_size, drop_remainder=True).prefetch(2)


def fit_with_optimizer(factory: ModelFactory, optimizer_name: str, base_images, soft_labels,
                       num_steps: int, batch_size: int, seed: int, test_images,
                       test_labels) -> float:
    """Trains a fresh model with `model.fit` for num_steps steps; returns test accuracy."""
    if optimizer_name not in OPTIMIZERS:
        raise DistillError(f"unknown optimizer {optimizer_name!r}; known: {', '.join(OPTIMIZERS)}")
    model = factory.build(seed)
    model.compile(optimizer=OPTIMIZERS[optimizer_name](),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(distilled_dataset(base_images, soft_labels, batch_size, seed), epochs=1,
              steps_per_epoch=max(num_steps, 1), shuffle=False, verbose=0)
    # Recompiled for evaluation: the test labels are class indices, not distributions.
    model.compile(metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return float(model.evaluate(test_images, test_labels, batch_size=2000, verbose=0,
                                return_dict=True)["accuracy"])


def optimizer_transfer(factory: ModelFactory, optimizer_names, base_images, soft_labels,
                       num_steps: int, batch_size: int, seeds, test_images, test_labels) -> dict:
    return {name: summary([fit_with_optimizer(factory, name, base_images, soft_labels,
                                              num_steps, batch_size, seed, test_images,
                                              test_labels) for seed in seeds])
            for name in optimizer_names}


def step_offset_transfer(trainer: EvaluationTrainer, soft_labels, num_steps: int, offsets,
                         seeds, test_images, test_labels) -> dict:
    """The protocol's models trained for the learned step count shifted by each offset."""
    results = {}
    for offset in offsets:
        steps = max(num_steps + offset, 1)
        results[str(offset)] = {"num_train_steps": steps, **summary(
            trainer.test_accuracies(soft_labels, steps, seeds, test_images, test_labels))}
    return results
