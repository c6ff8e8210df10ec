"""A target whose data hold only the test split (KMNIST's official test files on a
machine without its training files), made usable by an explicit, recorded re-split.

`--target_split=from_test` cuts the test split, stratified by class and with a fixed
seed, into the target's training split (70 %) and its test split (30 %); the protocol
then holds out validation images from that training split by the run's seed as usual,
10 % of the whole test split by default. For KMNIST's 10,000 test images: a pool of
6,000, 1,000 for validation and 3,000 for testing. The seed is fixed, not the run's, so
every run and every seed on the re-split is tested on the same 3,000 images and their
numbers compare. It is never chosen silently: a target without a training split is
refused unless asked for, and the re-split's record (`RawDataset.resplit`) goes into
results.json and the distilled set's metadata. Asked of data that do hold a training
split, it re-splits the test split all the same and records that the official training
split went unused: the same run then gives the same numbers on a machine with KMNIST's
training files as on one without them.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from kerasdistill.config import TARGET_SPLITS
from kerasdistill.data.loading import RawDataset
from kerasdistill.errors import DistillError, require_one_of
from kerasdistill.seeding import TEST_RESPLIT, rng_for

RESPLIT_TEST_FRACTION = 0.3
RESPLIT_VALIDATION_FRACTION = 0.1
# Fixed for every run (see above); a new value would be a new re-split, so it is recorded.
RESPLIT_SEED = 0


def fingerprint(array: np.ndarray) -> str:
    """A short SHA-256 of an array's bytes (positions, images)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def resplit_test(raw: RawDataset) -> RawDataset:
    """The data with their test split cut into a training split and a test split
    (stratified by class, RESPLIT_SEED), and the record of the cut."""
    raw.require("test", "--target_split=from_test")
    labels = raw.test_labels
    rng = rng_for(RESPLIT_SEED, TEST_RESPLIT)
    test_positions = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = int(round(RESPLIT_TEST_FRACTION * len(members)))
        test_positions.append(rng.permutation(members)[:take])
    test_positions = np.sort(np.concatenate(test_positions))
    train_positions = np.setdiff1d(np.arange(len(labels)), test_positions)
    num_validation = int(round(RESPLIT_VALIDATION_FRACTION * len(labels)))
    if not 0 < num_validation < len(train_positions) or not len(test_positions):
        raise DistillError(f"{raw.spec.name}'s test split ({len(labels)} images) is too small "
                           f"to re-split into training, validation and test images")
    # The re-split's own cut only: how many validation images a run holds out of the
    # training part is the run's (num_validation), the default recorded beside it.
    record = {"from_split": "test", "origin": raw.origin, "seed": RESPLIT_SEED,
              "official_train_split_unused": "train" in raw.splits,
              "stratified": True, "test_fraction": RESPLIT_TEST_FRACTION,
              "sizes": {"train": len(train_positions), "test": len(test_positions)},
              "default_validation": num_validation,
              "train_positions_sha256": fingerprint(train_positions.astype(np.int64)),
              "test_positions_sha256": fingerprint(test_positions.astype(np.int64)),
              "test_images_sha256": fingerprint(raw.test_images[test_positions])}
    return dataclasses.replace(
        raw, train_images=raw.test_images[train_positions],
        train_labels=labels[train_positions], test_images=raw.test_images[test_positions],
        test_labels=labels[test_positions], resplit=record,
        origin=f"{raw.origin} (test split re-split: {len(train_positions)} train / "
               f"{len(test_positions)} test)")


def as_target(raw: RawDataset, target_split: str = "official") -> RawDataset:
    """The data as a target sees them: both splits, official or re-split as asked;
    one error naming the missing split otherwise."""
    require_one_of("target_split", target_split, TARGET_SPLITS)
    if target_split == "from_test":
        return resplit_test(raw)
    raw.require("test", "the target (its test accuracy is the result)",
                "A dataset without a test split can be a --source only")
    return raw.require("train", "the target (its training images are what the labels are "
                                "learned against)",
                       "--target_split=from_test re-splits the test split into a training "
                       "pool, validation and test images (recorded with every result)")
