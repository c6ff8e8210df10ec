"""From a finished run to what leaves the tool: its distilled set, label statistics
and pictures. Used at the end of every run (which hands over everything the set needs),
and by `experiments.export`, which copies the set a run wrote, or rebuilds one for a run
folder that lacks it (export/rebuild.py)."""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.data.whitening import ZCAStatistics
from kerasdistill.errors import DistillError
from kerasdistill.export.distilled_set import (METADATA_FILE, DistilledSet, check_replaceable,
                                               load_distilled, write_distilled_set)
from kerasdistill.export.label_analysis import analyse_labels
from kerasdistill.export.plots import write_plots
from kerasdistill.export.rebuild import emnist_orientation, rebuild_run_set
from kerasdistill.files import check_creatable, read_json, shared_folder
from kerasdistill.version import __version__

DISTILLED_DIR = "distilled_set"
PLOTS_DIR = "plots"


@dataclasses.dataclass(frozen=True)
class RunProducts:
    """What `write_run_products` wrote, for results.json."""

    distilled: DistilledSet
    label_analysis: dict
    plots: list


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
        "source_images_orientation": (emnist_orientation(config)
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
    return RunProducts(distilled, analysis, _plots(distilled, analysis, results, plots_dir))


# What the pictures read of a set's metadata beyond what every set holds (the target).
PLOT_METADATA = ("source", "class_names", "source_class_names")


def check_plottable(distilled: DistilledSet, where: str):
    """Refuses, before anything is written, a set whose metadata lacks what the pictures
    name (a set made by hand may hold only the required keys)."""
    missing = [key for key in PLOT_METADATA if key not in distilled.metadata]
    if missing:
        raise DistillError(f"{where} cannot be drawn: its metadata lacks {', '.join(missing)}; "
                           f"export it without --plots_dir")


def write_set_plots(distilled: DistilledSet, plots_dir: str) -> list:
    """The pictures of a set without its run (a ready set, or one a colleague sent): all
    but the validation curve, which only a run's results.json holds."""
    check_plottable(distilled, "the set")
    metadata = distilled.metadata
    analysis = metadata.get("label_analysis") or analyse_labels(
        distilled.soft_labels, distilled.source_labels, len(metadata["source_class_names"]),
        metadata["source"] == metadata["target"])
    check_creatable(plots_dir, "--plots_dir")
    return _plots(distilled, analysis, {}, plots_dir)


def _plots(distilled: DistilledSet, analysis: dict, results: dict,
           plots_dir: str | None) -> list:
    """The pictures' file names (none without `plots_dir`)."""
    if not plots_dir:
        return []
    try:
        return write_plots(distilled, analysis, results.get("validation_curve"), plots_dir)
    except Exception as error:  # noqa: BLE001 - pictures must not cost a finished run
        logging.warning("the pictures could not be drawn (%s: %s); the results and the "
                        "distilled set are written regardless", type(error).__name__, error)
        return []


def export_run(model_dir: str, output_dir: str | None = None, data_dir: str | None = None,
               plots_dir: str | None = None, download: bool = False) -> RunProducts:
    """Writes the distilled set of the finished run in `model_dir` (and its pictures).

    A run writes its set into `<model_dir>/distilled_set` when it finishes, with everything
    the set needs (base images, labels, recipe, whitening); export copies it from there,
    without reading a dataset or building a model. A run folder without that set (made
    before runs kept one, or committed without it) has its set rebuilt from the source
    dataset by the base images' indices (export/rebuild.py), the only path that reads data.

    Args:
      model_dir: a run folder holding config.json and results.json.
      output_dir: where the set goes (default `<model_dir>/distilled_set`).
      data_dir: where the source dataset is, for a rebuild (default: the run's own data_dir).
      plots_dir: where the pictures go (default `<model_dir>/plots`; "" for none).
      download: let TFDS download a missing source dataset, for a rebuild.
    """
    if not os.path.isdir(model_dir):
        raise DistillError(f"{model_dir} is not a finished run: no such folder")
    # Held while the set is read and written: a run writing here (one being extended has
    # set its results.json aside) is refused, and none can start until the export ends.
    with shared_folder(model_dir):
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
        written = os.path.join(model_dir, DISTILLED_DIR)
        if os.path.exists(os.path.join(written, METADATA_FILE)):
            return _copy_written_set(written, results, output_dir, plots_dir or None)
        rebuilt = rebuild_run_set(config, results, data_dir, download)
        return write_run_products(config, results, rebuilt.base_images, rebuilt.recipe,
                                  output_dir, plots_dir or None, rebuilt.whitening)


def _copy_written_set(written: str, results: dict, output_dir: str,
                      plots_dir: str | None) -> RunProducts:
    """The set the run wrote, checked against its results.json and written again (to
    another folder, or in place), with its pictures."""
    distilled = load_distilled(written)
    same = (np.array_equal(distilled.soft_labels, np.asarray(results["labels"], np.float32))
            and distilled.source_indices.tolist() == list(results["base_indices"])
            and distilled.num_train_steps == int(results["num_train_steps"]))
    if not same:
        raise DistillError(f"{written} does not hold the labels of the run's results.json "
                           f"(left by an earlier run in this folder?); move it away and "
                           f"export again to rebuild it from the source dataset")
    write_distilled_set(distilled, output_dir)
    return RunProducts(distilled, distilled.metadata["label_analysis"],
                       _plots(distilled, distilled.metadata["label_analysis"], results,
                              plots_dir))
