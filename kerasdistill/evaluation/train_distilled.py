"""Training fresh models on a distilled set and measuring them on the target's test split.

Ordinary sets train plain Keras models with `model.compile` / `model.fit`; sets
learned for ridge-regression models (LD RR) train with the RR recipe of docs/method.md section 2b
(feature extractor + closed-form ridge classifier), which is not a `model.fit`
model, unless the caller asks for ordinary models explicitly.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np
import tensorflow as tf

from kerasdistill.config import TrainSettings
from kerasdistill.data.augmentation import Augmentation
from kerasdistill.errors import DistillError
from kerasdistill.evaluation.keras_training import (default_learning_rate, evaluate_accuracy,
                                                    fit_on_soft_labels, make_optimizer)
from kerasdistill.evaluation.transfer import summary
from kerasdistill.export.distilled_set import DistilledSet
from kerasdistill.seeding import TEST, derive_seed


def resolve_train_settings(settings: TrainSettings, distilled: DistilledSet) -> TrainSettings:
    """`settings` with every None filled from the set's recipe (each value's own check ran
    when the settings were made; what depends on the set is checked here)."""
    from kerasdistill.models import architecture_names
    recipe = distilled.metadata["recipe"]
    model_kind = recipe["model_kind"] if settings.model_kind == "auto" else settings.model_kind
    if model_kind == "ridge_regression" and (settings.optimizer not in (None, "adam")
                                             or settings.learning_rate is not None):
        raise DistillError(
            "this set's labels were learned for ridge-regression models (LD RR, docs/method.md section 2b): a "
            "feature extractor with a closed-form ridge classifier, trained with their own "
            "recipe (Adam on the features, a learned scale), not with a Keras optimizer. "
            "Drop --optimizer/--learning_rate, or pass --model_kind=ordinary to train "
            "ordinary Keras models on these labels instead")
    optimizer = settings.optimizer or recipe.get("optimizer", "adam")
    if settings.learning_rate is not None:
        learning_rate = settings.learning_rate
    elif settings.optimizer is None or settings.optimizer == recipe.get("optimizer"):
        learning_rate = recipe.get("learning_rate", default_learning_rate(optimizer))
    else:
        learning_rate = default_learning_rate(optimizer)
    architecture = settings.architecture or distilled.metadata["architecture"]
    if architecture not in architecture_names():
        raise DistillError(f"unknown architecture {architecture!r}; known: "
                           f"{', '.join(architecture_names())}")
    resolved = dataclasses.replace(
        settings, architecture=architecture, optimizer=optimizer,
        learning_rate=float(learning_rate), model_kind=model_kind,
        steps=distilled.num_train_steps if settings.steps is None else settings.steps,
        batch_size=distilled.inner_batch_size if settings.batch_size is None
        else settings.batch_size,
        seed=int(distilled.metadata.get("seed", 0)) if settings.seed is None else settings.seed,
        augment=Augmentation(tuple(recipe.get("augment", [])) if settings.augment is None
                             else tuple(settings.augment)).operations)
    # dataclasses.replace ran every option's check on the values the set gave.
    if resolved.batch_size > len(distilled):
        raise DistillError(f"batch_size must be in 1..{len(distilled)} (the set's size), "
                           f"got {resolved.batch_size}")
    return resolved


def train_on_distilled(distilled: DistilledSet, settings: TrainSettings, test_images,
                       test_labels, tensorboard_dir: str | None = None,
                       verbose: int = 0) -> dict:
    """Trains `settings.repetitions` fresh models and measures each on the test split.

    Args:
      distilled: the set.
      settings: resolved TrainSettings (`resolve_train_settings`).
      test_images: the target's test images, normalised as the set says.
      test_labels: their integer classes.
      tensorboard_dir: Keras TensorBoard logs, one sub-folder per model (None: none).
      verbose: 0 silent; 1 (a live Keras progress bar) or 2 (a line per model) and a
        line with each model's accuracy.

    Returns test_accuracy_mean / _std / test_accuracies (fractions) and the settings.
    """
    from kerasdistill.models import ModelFactory
    factory = ModelFactory(settings.architecture, tuple(distilled.metadata["image_shape"]),
                           distilled.num_classes)
    seeds = [derive_seed(settings.seed, TEST, i) for i in range(settings.repetitions)]
    start = time.perf_counter()
    if settings.model_kind == "ridge_regression":
        accuracies = _ridge_regression_accuracies(distilled, settings, factory, seeds,
                                                  test_images, test_labels, verbose)
    else:
        accuracies = []
        for index, seed in enumerate(seeds):
            accuracies.append(_fit_one(distilled, settings, factory, seed, index, test_images,
                                       test_labels, tensorboard_dir, verbose))
    return {**summary(accuracies), "settings": dataclasses.asdict(settings),
            "wall_seconds": time.perf_counter() - start}


def augmented_batches(dataset, augmentation: Augmentation, seed: int):
    """(image, label) batches with `augmentation` applied to batch k's images on the
    stateless draw (seed, k); `dataset` itself when there is none."""
    if not augmentation:
        return dataset
    return dataset.enumerate().map(lambda step, batch: (augmentation(batch[0], tf.stack(
        [tf.constant(seed, tf.int64), step])), batch[1]))


def _fit_one(distilled, settings, factory, seed, index, test_images, test_labels,
             tensorboard_dir, verbose) -> float:
    import keras
    callbacks = []
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(
            log_dir=os.path.join(tensorboard_dir, f"model_{index:02d}"), update_freq=10))
    dataset = augmented_batches(
        distilled.as_dataset(settings.batch_size, shuffle=True, seed=seed, repeat=True),
        Augmentation(settings.augment), seed)
    model = fit_on_soft_labels(
        factory.build(seed), dataset, settings.steps, make_optimizer(settings.optimizer, settings.learning_rate),
        callbacks=callbacks, verbose=verbose)
    accuracy = evaluate_accuracy(model, test_images, test_labels)
    if verbose:
        print(f"model {index + 1}/{settings.repetitions}: test accuracy {100 * accuracy:.2f} %",
              file=sys.stderr)
    return accuracy


def _ridge_regression_accuracies(distilled, settings, factory, seeds, test_images,
                                 test_labels, verbose) -> list[float]:
    """The RR recipe (docs/method.md section 2b steps 2, 3 and 5), as the run's own test models."""
    from kerasdistill.distill.ridge_regression import RidgeRegressionSolver
    from kerasdistill.training.trainer import EvaluationTrainer
    trainer = EvaluationTrainer(RidgeRegressionSolver(factory, outer_precision="float32"),
                                distilled.normalized_images(), settings.batch_size,
                                augmentation=Augmentation(settings.augment))
    accuracies = trainer.test_accuracies(distilled.soft_labels, settings.steps, seeds,
                                         test_images, np.asarray(test_labels))
    if verbose:
        for index, accuracy in enumerate(accuracies):
            print(f"model {index + 1}/{settings.repetitions} (ridge regression): test accuracy "
                  f"{100 * accuracy:.2f} %", file=sys.stderr)
    return accuracies
