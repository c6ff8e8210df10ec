"""How far learned labels carry: other architectures, other optimizers, other step counts.

Optimizer transfer trains ordinary Keras models with `model.fit` on a tf.data
dataset of (base image, soft label), exactly as a user of a shared distilled set
would; nothing of the meta-learning machinery is involved.
"""

from __future__ import annotations

import numpy as np

from kerasdistill.data.pipeline import soft_label_dataset
from kerasdistill.evaluation.keras_training import (OPTIMIZERS, evaluate_accuracy,
                                                    fit_on_soft_labels, make_optimizer)
from kerasdistill.models.registry import ModelFactory
from kerasdistill.training.trainer import EvaluationTrainer

__all__ = ["OPTIMIZERS", "fit_with_optimizer", "optimizer_transfer", "step_offset_transfer",
           "summary"]


def summary(accuracies) -> dict:
    return {"test_accuracy_mean": float(np.mean(accuracies)),
            "test_accuracy_std": float(np.std(accuracies)),
            "test_accuracies": [float(a) for a in accuracies]}


def fit_with_optimizer(factory: ModelFactory, optimizer_name: str, base_images, soft_labels,
                       num_steps: int, batch_size: int, seed: int, test_images,
                       test_labels) -> float:
    """Trains a fresh model with `model.fit` for num_steps steps; returns test accuracy."""
    optimizer = make_optimizer(optimizer_name)
    model = fit_on_soft_labels(
        factory.build(seed), soft_label_dataset(np.asarray(base_images, np.float32),
                                                soft_labels, batch_size, seed),
        num_steps, optimizer)
    return evaluate_accuracy(model, test_images, test_labels)


def transfer_key(optimizer_name: str) -> str:
    """The name of an optimizer-transfer row. Keras's Adam adds epsilon (1e-7) before
    bias correction; the protocol's Adam (PyTorch's form, 1e-8 after it) has its own
    row, `protocol_adam`, so "adam" alone would be ambiguous."""
    return "keras_adam" if optimizer_name == "adam" else optimizer_name


def optimizer_transfer(factory: ModelFactory, optimizer_names, base_images, soft_labels,
                       num_steps: int, batch_size: int, seeds, test_images, test_labels) -> dict:
    """{row: summary} of fresh models trained with `model.fit` and each Keras optimizer."""
    return {transfer_key(name): summary([
        fit_with_optimizer(factory, name, base_images, soft_labels, num_steps, batch_size,
                           seed, test_images, test_labels) for seed in seeds])
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
