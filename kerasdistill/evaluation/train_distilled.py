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


@dataclasses.dataclass(frozen=True)
class TargetTestSplit:
    """A set's target test split, prepared as the set's own images were."""

    images: np.ndarray   # normalised (and whitened, when the recipe whitens)
    labels: np.ndarray
    dataset: str         # the target's name
    origin: str          # the file or TFDS builder it was read from


def load_test_split(distilled: DistilledSet, target: str | None = None,
                    data_dir: str | None = None, download: bool = False) -> TargetTestSplit:
    """The test split a set's models are measured on: its target's official test split,
    or the recorded re-split of it the run made (checked to be the same images), read
    from `data_dir` (or TFDS). `target`: another name or path for the set's own target
    (a set made on a user's file, moved elsewhere), checked to hold the same arrays."""
    from kerasdistill.data.loading import load_dataset
    from kerasdistill.data.registry import get_dataset_spec
    from kerasdistill.data.resplit import as_target
    name = target or distilled.metadata["target"]
    raw = load_dataset(name, data_dir, download)
    if distilled.metadata.get("target_split", "official") != "official":
        raw = as_target(raw, distilled.metadata["target_split"])
    raw.require("test", "a distilled set's models (they are tested on the test split)")
    _check_same_resplit(raw, distilled.metadata.get("target_resplit"))
    _check_same_user_data(distilled.metadata, name)
    return TargetTestSplit(images=distilled.preprocess(raw.test_images),
                     labels=np.asarray(raw.test_labels), dataset=get_dataset_spec(name).name,
                     origin=raw.origin)


def _check_same_resplit(target, recorded: dict | None):
    """A re-split target must give the same test images as the run's (same data, same
    rule): the recorded positions' fingerprint says so."""
    if recorded is None or target.resplit is None:
        return
    for key in ("train_positions_sha256", "test_positions_sha256", "test_images_sha256"):
        if key in recorded and recorded[key] != target.resplit[key]:
            raise DistillError(f"the re-split of {target.origin} differs from the one the set "
                               f"was made with ({key} {target.resplit[key]} against "
                               f"{recorded.get(key)}): other data than the run's?")


def _check_same_user_data(metadata: dict, target: str):
    """A set made on a user's own file is tested on that file's arrays, not on whatever
    the path holds today; and a set of a registered dataset on that dataset."""
    from kerasdistill.data.registry import get_dataset_spec
    from kerasdistill.data.user_data import check_same_arrays
    recorded = metadata.get("target_fingerprint")
    if recorded is None and get_dataset_spec(target).fingerprint is None:
        if target != metadata["target"]:
            raise DistillError(f"--target={target}: the set was made for {metadata['target']}")
        return
    if recorded is None:
        raise DistillError(f"--target={target} is your own data; the set was made for "
                           f"{metadata['target']}")
    check_same_arrays(target, recorded, "the set was made with")


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


def check_ready_set(card, repetitions: int, data_dir: str | None = None,
                    download: bool = False) -> float:
    """Retrains `repetitions` models on the ready set `card` (kerasdistill.sets) with its
    recipe, tests them on its target's test split, and raises DistillError unless their
    mean is within the card's tolerance of its accuracy. Returns that mean in %."""
    from kerasdistill.export.distilled_set import load_distilled
    from kerasdistill.sets import check_card
    distilled = load_distilled(card.path)
    settings = resolve_train_settings(TrainSettings(repetitions=repetitions), distilled)
    test = load_test_split(distilled, data_dir=data_dir, download=download)
    results = train_on_distilled(distilled, settings, test.images, test.labels)
    return check_card(card, results["test_accuracies"])
