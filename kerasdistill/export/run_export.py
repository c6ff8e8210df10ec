"""From a finished run to what leaves the tool: its distilled set, label statistics
and pictures. Used at the end of every run, and by `experiments.export` for runs
that finished before distilled sets existed (it rebuilds the base images from the
source dataset by index)."""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from kerasdistill import __version__
from kerasdistill.data.loading import load_dataset
from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.data.resplit import as_target
from kerasdistill.data.user_data import check_same_arrays
from kerasdistill.data.splits import adapt_images, split_target
from kerasdistill.data.whitening import ZCAStatistics
from kerasdistill.errors import DistillError
from kerasdistill.evaluation.label_analysis import analyse_labels
from kerasdistill.export.distilled_set import DistilledSet, check_replaceable, write_distilled_set
from kerasdistill.export.plots import write_plots
from kerasdistill.files import check_creatable, read_json, shared_folder

DISTILLED_DIR = "distilled_set"
PLOTS_DIR = "plots"


@dataclasses.dataclass(frozen=True)
class RunProducts:
    """What `write_run_products` wrote, for results.json."""

    distilled: DistilledSet
    label_analysis: dict
    plots: list


def base_images_of(source_train_images: np.ndarray, indices, target_shape) -> np.ndarray:
    """The base images as the target's models see them before normalisation (uint8):
    the source's official train images at `indices`, resized and converted to the
    target's shape when the datasets differ."""
    return adapt_images(np.asarray(source_train_images)[np.asarray(indices, np.int64)],
                        tuple(target_shape))


def _emnist_orientation(config: dict) -> str:
    """How the run's models saw EMNIST: its config says, or (written before 0.4, which
    transposed EMNIST back at load) upright."""
    return config.get("emnist_orientation", "upright")


def distilled_metadata(config: dict, results: dict, recipe: dict) -> dict:
    """distilled_set.json: the recipe the labels were selected with, and provenance."""
    target = get_dataset_spec(config["target"])
    source = get_dataset_spec(config.get("source") or config["target"])
    distill = config["distill"]
    metadata = {
        "target": target.name, "source": source.name,
        # The split the base images come from: the training split, which a re-split
        # target cut from its official test split.
        "source_split": ("train" if config.get("source") not in (None, config["target"]) or
                         config.get("target_split", "official") == "official"
                         else "train of the re-split test split"),
        "class_names": target.class_name_list(),
        "source_class_names": source.class_name_list(),
        "num_classes": target.num_classes, "image_shape": list(target.image_shape),
        "mean": list(target.mean), "std": list(target.std),
        # EMNIST is stored transposed; these images are as the run's models saw them.
        "source_images_orientation": (_emnist_orientation(config)
                                      if source.stored_transposed else "as_stored"),
        "num_train_steps": int(results["num_train_steps"]),
        "inner_batch_size": int(distill["inner_batch_size"]),
        # The augmentation and the whitening (issue 13's recipes; [] and "none" for the
        # paper's) are part of how the labels were learned and selected, so
        # experiments.train repeats them.
        "recipe": {**recipe, "batch_size": int(distill["inner_batch_size"]),
                   "num_train_steps": int(results["num_train_steps"]),
                   "augment": list(distill.get("augment", [])),
                   **_whitening_recipe(config)},
        "architecture": config["architecture"], "algorithm": config["algorithm"],
        "method": results["method"], "baseline": config.get("baseline", "none"),
        "seed": int(distill["seed"]), "num_base_examples": int(distill["num_base_examples"]),
        "base_selection": config.get("base_selection"),
        "outer_precision": results.get("outer_precision"),
        "test_accuracy_mean": results["test_accuracy_mean"],
        "test_accuracy_std": results["test_accuracy_std"],
        "test_repetitions": len(results["test_accuracies"]),
        "validation_error": results.get("validation_error"),
        "run_kerasdistill_version": config.get("kerasdistill_version"),
        "run_tensorflow_version": config.get("tensorflow_version"),
        "kerasdistill_version": __version__,
        "tensorflow_version": _tensorflow_version(),
    }
    if config.get("target_split", "official") != "official":
        # The target's splits were cut from its test split (data/resplit.py): the record
        # says which images test the set, and experiments.train cuts them again.
        metadata.update(target_split=config["target_split"],
                        target_resplit=results.get("target_resplit"))
    for role, spec in (("target", target), ("source", source)):
        if spec.fingerprint:  # a user's own data (data/user_data.py): which arrays exactly
            metadata[f"{role}_fingerprint"] = spec.fingerprint
    return metadata


def _whitening_recipe(config: dict) -> dict:
    if config.get("whitening", "none") == "none":
        return {"whitening": "none"}
    return {"whitening": config["whitening"],
            "zca_regularization": float(config["zca_regularization"]),
            "whitening_fitted_on": f"{config['target']}'s training split of seed "
                                   f"{config['distill']['seed']} (never validation or test)"}


def _tensorflow_version() -> str:
    import tensorflow as tf
    return tf.__version__


def write_run_products(config: dict, results: dict, base_images: np.ndarray, recipe: dict,
                       distilled_dir: str, plots_dir: str | None,
                       whitening: ZCAStatistics | None = None) -> RunProducts:
    """Writes the distilled set (and, unless plots_dir is None, the pictures).
    `whitening`: the run's fitted ZCA whitening, when its config whitens."""
    metadata = distilled_metadata(config, results, recipe)
    within = metadata["source"] == metadata["target"]
    source_labels = np.asarray(results["base_source_labels"], np.int64)
    analysis = analyse_labels(np.asarray(results["labels"], np.float32), source_labels,
                              len(metadata["source_class_names"]), within)
    distilled = DistilledSet(
        images=np.asarray(base_images, np.uint8),
        soft_labels=np.asarray(results["labels"], np.float32),
        source_indices=np.asarray(results["base_indices"], np.int64),
        source_labels=source_labels, metadata={**metadata, "label_analysis": analysis},
        whitening=whitening)
    write_distilled_set(distilled, distilled_dir)
    plots = []
    if plots_dir:
        try:
            plots = write_plots(distilled, analysis, results.get("validation_curve"), plots_dir)
        except Exception as error:  # noqa: BLE001 - pictures must not cost a finished run
            logging.warning("the pictures could not be drawn (%s: %s); the results and the "
                            "distilled set are written regardless", type(error).__name__, error)
    return RunProducts(distilled, analysis, plots)


def export_run(model_dir: str, output_dir: str | None = None, data_dir: str | None = None,
               plots_dir: str | None = None, download: bool = False) -> RunProducts:
    """Writes the distilled set of the finished run in `model_dir`.

    Args:
      model_dir: a run folder holding config.json and results.json.
      output_dir: where the set goes (default `<model_dir>/distilled_set`).
      data_dir: where the source dataset is (default: the run's own data_dir).
      plots_dir: where the pictures go (default `<model_dir>/plots`; "" for none).
      download: let TFDS download a missing source dataset.
    """
    if not os.path.isdir(model_dir):
        raise DistillError(f"{model_dir} is not a finished run: no such folder")
    # Held while the set is read and written: a run writing here (one being extended has
    # set its results.json aside) is refused, and none can start until the export ends.
    with shared_folder(model_dir):
        return _export_held_run(model_dir, output_dir, data_dir, plots_dir, download)


def _export_held_run(model_dir: str, output_dir: str | None, data_dir: str | None,
                     plots_dir: str | None, download: bool) -> RunProducts:
    from kerasdistill.distill.registry import build_solver
    from kerasdistill.models import ModelFactory
    for name in ("config.json", "results.json"):
        if not os.path.exists(os.path.join(model_dir, name)):
            raise DistillError(f"{model_dir} is not a finished run: it has no {name}")
    config = read_json(os.path.join(model_dir, "config.json"), "the run's config")
    results = read_json(os.path.join(model_dir, "results.json"), "the run's results")
    for key in ("labels", "base_indices", "base_source_labels", "num_train_steps"):
        if key not in results:
            raise DistillError(f"{model_dir}/results.json lacks {key!r}")
    output_dir = output_dir or os.path.join(model_dir, DISTILLED_DIR)
    plots_dir = os.path.join(model_dir, PLOTS_DIR) if plots_dir is None else plots_dir
    check_replaceable(output_dir, "--output_dir")
    if plots_dir:
        check_creatable(plots_dir, "--plots_dir")
    _check_user_data_unchanged(config, results)
    target = get_dataset_spec(config["target"])
    source_name = config.get("source") or config["target"]
    source = load_dataset(source_name, data_dir if data_dir is not None else
                          config.get("data_dir"), download,
                          _emnist_orientation(config),
                          config.get("npz_orientation", "as_stored"))
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
    images = base_images_of(source.train_images, indices, target.image_shape)
    return write_run_products(config, results, images, recipe, output_dir, plots_dir or None,
                              _refitted_whitening(config, results, data_dir, download))


def _check_user_data_unchanged(config: dict, results: dict):
    """A run on a user's own files exports only from the arrays it was made with: the
    set would otherwise carry another file's images, normalisation and class names."""
    for role, record in (results.get("user_data") or {}).items():
        check_same_arrays(config.get(role) or config["target"], record["fingerprint"],
                          "the run was made with")


def _refitted_whitening(config: dict, results: dict, data_dir: str | None, download: bool):
    """The run's ZCA whitening fitted again, as the run fitted it: on its target's
    training split (the same seed's split of the same data), checked against the
    fingerprint in its results.json; None for a run without whitening."""
    from kerasdistill.experiment import run_whitening
    if config.get("whitening", "none") == "none":
        return None
    if "whitening" not in results:
        raise DistillError("the run whitened its images but its results.json lacks the "
                           "whitening's fingerprint: it cannot be checked when fitted again")
    raw = as_target(load_dataset(config["target"], data_dir if data_dir is not None else
                                 config.get("data_dir"), download, _emnist_orientation(config),
                                 config.get("npz_orientation", "as_stored")),
                    config.get("target_split", "official"))
    whitening = run_whitening(config, split_target(raw, config["distill"]["seed"],
                                                   config.get("num_validation"),
                                                   config.get("target_set_size")))
    whitening.check_fingerprint(results["whitening"], f"{config['target']} ({raw.origin})")
    return whitening
