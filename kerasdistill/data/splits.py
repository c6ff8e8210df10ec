"""The protocol's view of the data: splits, normalisation and the base examples."""

from __future__ import annotations

import dataclasses

import numpy as np

from kerasdistill.data.loading import RawDataset
from kerasdistill.data.registry import DatasetSpec
from kerasdistill.errors import DistillError
from kerasdistill.seeding import BASE_EXAMPLES, SPLIT, TARGET_SUBSET, rng_for


def normalize_images(images: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """uint8 NHWC images -> float32 with the target's per-channel mean and std."""
    return normalize_pixels(images, spec.mean, spec.std)


def normalize_pixels(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 NHWC images -> float32 (x / 255 - mean) / std, per channel (a registry
    spec's or a distilled set's recorded mean and std)."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return ((np.asarray(images).astype(np.float32) / 255.0) - mean) / std


@dataclasses.dataclass(frozen=True)
class TargetSplits:
    """The target dataset, normalised, split as docs/method.md section 3 says.

    `train_positions` and `validation_positions` are indices into the official
    train split, so results can name the exact images. `pool_positions` are all the
    training positions before a `target_set_size` cut: within a dataset the base examples
    come from them, so every target-set size distils labels for the same base images.
    """

    spec: DatasetSpec
    train_images: np.ndarray
    train_labels: np.ndarray
    train_positions: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    validation_positions: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    pool_positions: np.ndarray | None = None  # None: train_positions

    @property
    def base_pool_positions(self) -> np.ndarray:
        return self.train_positions if self.pool_positions is None else self.pool_positions

    def whitened(self, whitening) -> "TargetSplits":
        """These splits with every image passed through `whitening` (a fitted
        data.whitening.ZCAStatistics)."""
        return dataclasses.replace(self, train_images=whitening(self.train_images),
                                   validation_images=whitening(self.validation_images),
                                   test_images=whitening(self.test_images))


def split_target(raw: RawDataset, seed: int, num_validation: int | None = None,
                 target_set_size: int | None = None) -> TargetSplits:
    """Holds out a seeded random validation set from the official train split.

    Args:
      raw: the loaded dataset.
      seed: the run's seed; the same seed gives the same split.
      num_validation: examples held out; default: the registry's (10,000 for MNIST), or a
        re-split's own.
      target_set_size: keep only this many training examples (docs/method.md section 5.5);
        default: all that remain after the validation split.
    """
    spec = raw.spec
    raw.require("train", "the target").require("test", "the target")
    if num_validation is None:  # a re-split test split sets its own (data/resplit.py)
        num_validation = (raw.resplit["default_validation"] if raw.resplit
                          else spec.num_validation)
    num_official = len(raw.train_images)
    if not 0 < num_validation < num_official:
        raise DistillError(
            f"{spec.name}: cannot hold out {num_validation} validation examples from "
            f"{num_official} training examples")
    permutation = rng_for(seed, SPLIT).permutation(num_official)
    validation_positions = np.sort(permutation[:num_validation])
    train_positions = pool_positions = np.sort(permutation[num_validation:])
    if target_set_size is not None:
        if not 0 < target_set_size <= len(train_positions):
            raise DistillError(
                f"target_set_size must be in 1..{len(train_positions)} for {spec.name}, "
                f"got {target_set_size}")
        keep = rng_for(seed, TARGET_SUBSET).permutation(len(train_positions))
        train_positions = np.sort(train_positions[keep[:target_set_size]])
    return TargetSplits(
        spec=spec,
        train_images=normalize_images(raw.train_images[train_positions], spec),
        train_labels=raw.train_labels[train_positions],
        train_positions=train_positions,
        validation_images=normalize_images(raw.train_images[validation_positions], spec),
        validation_labels=raw.train_labels[validation_positions],
        validation_positions=validation_positions,
        test_images=normalize_images(raw.test_images, spec),
        test_labels=raw.test_labels, pool_positions=pool_positions)


def select_base_examples(labels: np.ndarray, num_base_examples: int, num_classes: int,
                         balanced: bool, seed: int) -> np.ndarray:
    """Chooses the base examples; returns indices into `labels`.

    Balanced: num_base_examples / num_classes per class, in class order
    (class 0's examples first). Unbalanced: a plain random sample, classes ignored
    (the cross-dataset setting, where source classes mean nothing to the target).
    """
    if num_base_examples <= 0:
        raise DistillError(f"num_base_examples must be positive, got {num_base_examples}")
    if num_base_examples > len(labels):
        raise DistillError(
            f"num_base_examples={num_base_examples} exceeds the {len(labels)} candidate images")
    rng = rng_for(seed, BASE_EXAMPLES)
    if not balanced:
        return np.sort(rng.choice(len(labels), num_base_examples, replace=False))
    if num_base_examples % num_classes:
        raise DistillError(
            f"balanced base examples need num_base_examples divisible by the "
            f"{num_classes} classes, got {num_base_examples}")
    per_class = num_base_examples // num_classes
    chosen = []
    for label in range(num_classes):
        candidates = np.flatnonzero(labels == label)
        if len(candidates) < per_class:
            raise DistillError(
                f"class {label} has only {len(candidates)} examples, {per_class} needed")
        chosen.append(np.sort(rng.choice(candidates, per_class, replace=False)))
    return np.concatenate(chosen)


def adapt_images(images: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Brings uint8 source images to the target's shape (cross-dataset base examples).

    Resizes bilinearly when the sizes differ and repeats a single grey channel to
    colour; colour to greyscale uses the ITU-R 601 luma weights.
    """
    height, width, channels = image_shape
    if images.shape[1:3] != (height, width):
        import tensorflow as tf
        resized = tf.image.resize(images.astype(np.float32), (height, width), antialias=True)
        images = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
    if images.shape[-1] == channels:
        return images
    if images.shape[-1] == 1:
        return np.repeat(images, channels, axis=-1)
    if channels == 1:
        luma = images.astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]
    raise DistillError(f"cannot convert {images.shape[-1]}-channel images to {channels} channels")


def base_images_of(source_train_images: np.ndarray, indices, target_shape) -> np.ndarray:
    """The base images as the target's models see them before normalisation (uint8):
    the source's official train images at `indices`, resized and converted to the
    target's shape when the datasets differ."""
    return adapt_images(np.asarray(source_train_images)[np.asarray(indices, np.int64)],
                        tuple(target_shape))
