"""The set of a run folder that does not hold one, rebuilt from the source dataset.

Runs made before a run kept its distilled set, and run folders committed without it
(`results/` keeps config.json and results.json only), have what a set needs except the
base images, the recipe and the whitening. The images are read again from the source
dataset by their indices in its training split and checked against the classes the run
recorded for them; the recipe comes from the run's solver, built for it; a whitened run's
whitening is fitted again on the same split of the same data and checked against its
fingerprint. This is the only part of exporting that reads a dataset or builds a model.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kerasdistill.data.loading import load_dataset
from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.data.resplit import as_target
from kerasdistill.data.splits import base_images_of, split_target
from kerasdistill.data.user_data import check_same_arrays
from kerasdistill.data.whitening import ZCAStatistics, fit_run_whitening
from kerasdistill.errors import DistillError


@dataclasses.dataclass(frozen=True)
class RebuiltSet:
    """What a run folder without its set lacks for writing one."""

    base_images: np.ndarray          # uint8, as the run's models saw them
    recipe: dict                     # the solver's training recipe
    whitening: ZCAStatistics | None  # the run's, fitted again (None: it did not whiten)


def emnist_orientation(config: dict) -> str:
    """How the run's models saw EMNIST: its config says, or (written before 0.4, which
    transposed EMNIST back at load) upright."""
    return config.get("emnist_orientation", "upright")


def rebuild_run_set(config: dict, results: dict, data_dir: str | None,
                    download: bool) -> RebuiltSet:
    """The base images, recipe and whitening of the run `config` / `results` describe.
    `data_dir`: where the data are (None: the run's own)."""
    from kerasdistill.distill.registry import build_solver
    from kerasdistill.models import ModelFactory
    _check_user_data_unchanged(config, results)
    data_dir = data_dir if data_dir is not None else config.get("data_dir")
    target = get_dataset_spec(config["target"])
    source_name = config.get("source") or config["target"]
    source = _load(config, source_name, data_dir, download)
    if source_name == config["target"]:
        # Within a dataset the base images come from the target's training split as the
        # run made it: official, or cut from the test split (data/resplit.py).
        source = as_target(source, config.get("target_split", "official"))
    source.require("train", "the export (the run's base images come from it)")
    indices = np.asarray(results["base_indices"], np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(source.train_labels)):
        raise DistillError(f"the run's base indices do not fit {source_name}'s "
                           f"{len(source.train_labels)} training images: other data?")
    if not np.array_equal(source.train_labels[indices], results["base_source_labels"]):
        raise DistillError(f"the {source_name} data found ({source.origin}) do not match the "
                           f"run: the classes of its base images differ. Point --data_dir at "
                           f"the data the run used")
    factory = ModelFactory(config["architecture"], target.image_shape, target.num_classes)
    recipe = build_solver(config["algorithm"], factory, outer_precision="float32").recipe()
    return RebuiltSet(base_images_of(source.train_images, indices, target.image_shape), recipe,
                      _refitted_whitening(config, results, data_dir, download))


def _load(config: dict, name: str, data_dir: str | None, download: bool):
    return load_dataset(name, data_dir, download, emnist_orientation(config),
                        config.get("npz_orientation", "as_stored"))


def _check_user_data_unchanged(config: dict, results: dict):
    """A run on a user's own files exports only from the arrays it was made with: the
    set would otherwise carry another file's images, normalisation and class names."""
    for role, record in (results.get("user_data") or {}).items():
        check_same_arrays(config.get(role) or config["target"], record["fingerprint"],
                          "the run was made with")


def _refitted_whitening(config: dict, results: dict, data_dir: str | None,
                        download: bool) -> ZCAStatistics | None:
    """The run's ZCA whitening fitted again, as the run fitted it: on its target's
    training split (the same seed's split of the same data), checked against the
    fingerprint in its results.json; None for a run without whitening."""
    if config.get("whitening", "none") == "none":
        return None
    if "whitening" not in results:
        raise DistillError("the run whitened its images but its results.json lacks the "
                           "whitening's fingerprint: it cannot be checked when fitted again")
    raw = as_target(_load(config, config["target"], data_dir, download),
                    config.get("target_split", "official"))
    target = split_target(raw, config["distill"]["seed"], config.get("num_validation"),
                          config.get("target_set_size"))
    whitening = fit_run_whitening(config["whitening"], config["zca_regularization"],
                                  target.train_images)
    whitening.check_fingerprint(results["whitening"], f"{config['target']} ({raw.origin})")
    return whitening
