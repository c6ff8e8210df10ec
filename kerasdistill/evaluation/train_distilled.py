"""Training fresh models on a distilled set and measuring them on the target's test split.

Ordinary sets train plain Keras models with `model.compile` / `model.fit`; sets
learned for ridge-regression models (LD RR) train with the RR recipe of SPEC 2b
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

from kerasdistill.data.augmentation import Augmentation
from kerasdistill.errors import DistillError
from kerasdistill.evaluation.keras_training import (OPTIMIZERS, default_learning_rate,
                                                    evaluate_accuracy, fit_on_soft_labels,
                                                    make_optimizer)
from kerasdistill.evaluation.transfer import summary
from kerasdistill.export.distilled_set import DistilledSet
from kerasdistill.seeding import TEST, derive_seed

MODEL_KINDS = ("auto", "ordinary", "ridge_regression")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How to train on a distilled set; None means "the set's own recipe"."""

    architecture: str | None = None
    optimizer: str | None = None          # None: the recipe's (adam)
    learning_rate: float | None = None    # None: the recipe's, or the optimizer's usual
    steps: int | None = None              # None: the set's num_train_steps
    batch_size: int | None = None         # None: the set's inner_batch_size
    repetitions: int = 20
    seed: int | None = None               # None: the run's seed (same inits as its test models)
    model_kind: str = "auto"              # auto: the set's
    augment: tuple | None = None          # None: the set's recipe's (data/augmentation.py)

    def resolved(self, distilled: DistilledSet) -> "TrainSettings":
        """The settings with every None filled from the set; checks them all."""
        from kerasdistill.models import architecture_names
        recipe = distilled.metadata["recipe"]
        if self.model_kind not in MODEL_KINDS:
            raise DistillError(f"model_kind must be one of {MODEL_KINDS}, got {self.model_kind!r}")
        model_kind = recipe["model_kind"] if self.model_kind == "auto" else self.model_kind
        if model_kind == "ridge_regression" and (self.optimizer not in (None, "adam")
                                                 or self.learning_rate is not None):
            raise DistillError(
                "this set's labels were learned for ridge-regression models (LD RR, SPEC 2b): a "
                "feature extractor with a closed-form ridge classifier, trained with their own "
                "recipe (Adam on the features, a learned scale), not with a Keras optimizer. "
                "Drop --optimizer/--learning_rate, or pass --model_kind=ordinary to train "
                "ordinary Keras models on these labels instead")
        optimizer = self.optimizer or recipe.get("optimizer", "adam")
        if optimizer not in OPTIMIZERS:
            raise DistillError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.learning_rate is not None:
            learning_rate = self.learning_rate
        elif self.optimizer is None or self.optimizer == recipe.get("optimizer"):
            learning_rate = recipe.get("learning_rate", default_learning_rate(optimizer))
        else:
            learning_rate = default_learning_rate(optimizer)
        architecture = self.architecture or distilled.metadata["architecture"]
        if architecture not in architecture_names():
            raise DistillError(f"unknown architecture {architecture!r}; known: "
                               f"{', '.join(architecture_names())}")
        resolved = dataclasses.replace(
            self, architecture=architecture, optimizer=optimizer,
            learning_rate=float(learning_rate), model_kind=model_kind,
            steps=distilled.num_train_steps if self.steps is None else self.steps,
            batch_size=distilled.inner_batch_size if self.batch_size is None
            else self.batch_size,
            seed=int(distilled.metadata.get("seed", 0)) if self.seed is None else self.seed,
            augment=Augmentation(tuple(recipe.get("augment", [])) if self.augment is None
                                 else tuple(self.augment)).operations)
        if not resolved.learning_rate > 0:
            raise DistillError(f"learning_rate must be positive, got {resolved.learning_rate}")
        if resolved.steps <= 0:
            raise DistillError(f"steps must be positive, got {resolved.steps}")
        if not 0 < resolved.batch_size <= len(distilled):
            raise DistillError(f"batch_size must be in 1..{len(distilled)} (the set's size), "
                               f"got {resolved.batch_size}")
        if resolved.repetitions <= 0:
            raise DistillError(f"repetitions must be positive, got {resolved.repetitions}")
        return resolved


def train_on_distilled(distilled: DistilledSet, settings: TrainSettings, test_images,
                       test_labels, tensorboard_dir: str | None = None,
                       verbose: int = 0) -> dict:
    """Trains `settings.repetitions` fresh models and measures each on the test split.

    Args:
      distilled: the set.
      settings: resolved TrainSettings (`settings.resolved(distilled)`).
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
    """The RR recipe (SPEC 2b steps 2, 3 and 5), as the run's own test models."""
    from kerasdistill.distill.ridge_regression import RidgeRegressionSolver
    from kerasdistill.evaluation.training import EvaluationTrainer
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
