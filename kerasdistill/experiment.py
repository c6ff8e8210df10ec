"""One experiment of the paper's protocol, end to end, writing config and results.

This is what `python -m experiments.distill` runs; tests call it directly with
tiny data. Everything it decides is written to `config.json` before the run and
everything it measured to `results.json` after it, with the distilled set and the
pictures of the labels beside them.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from kerasdistill.budget import default_architecture
from kerasdistill.config import ExperimentConfig, to_json_dict
from kerasdistill.data.augmentation import Augmentation
from kerasdistill.data.loading import RawDataset, load_dataset
from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.data.resplit import as_target
from kerasdistill.data.splits import (TargetSplits, base_images_of, normalize_images,
                                      select_base_examples, split_target)
from kerasdistill.data.user_data import user_data_record
from kerasdistill.data.whitening import ZCAStatistics, fit_run_whitening
from kerasdistill.distill.autotune import choose_jit_compile
from kerasdistill.distill.identity import check_model_dir, run_identity
from kerasdistill.distill.loop import StartingLabels, distill_labels
from kerasdistill.distill.registry import build_solver
from kerasdistill.errors import DistillError
from kerasdistill.evaluation.label_baselines import (TeacherBudget, class_mapping_labels,
                                                     teacher_labels, train_teacher, uniform_labels)
from kerasdistill.evaluation.transfer import optimizer_transfer, step_offset_transfer, summary
from kerasdistill.export.distilled_set import check_replaceable
from kerasdistill.export.run_export import DISTILLED_DIR, PLOTS_DIR, write_run_products
from kerasdistill.files import (check_creatable, check_not_in_use, exclusive_folder,
                                prepare_output_dir, read_json, write_json_atomic)
from kerasdistill.hardware import device_description, resolve_outer_precision
from kerasdistill.models import ModelFactory, architecture_names
from kerasdistill.seeding import BASELINE, CLASS_MAPPING, TEACHER, TEST, derive_seed
from kerasdistill.training.trainer import (DEFAULT_MODELS_PER_CALL, EvaluationTrainer,
                                           baseline_checkpoints, choose_num_steps)
from kerasdistill.version import __version__


def check_available(config: ExperimentConfig):
    """The checks that need the data registry and the model registry (each option's own
    check and the rules between options ran when `config` was made): the datasets and
    architectures named exist."""
    get_dataset_spec(config.target)
    get_dataset_spec(config.source_or_target)
    known = architecture_names()
    for architecture in ([] if config.architecture == "auto" else [config.architecture]) + \
            list(config.eval_architectures):
        if architecture not in known:
            raise DistillError(f"unknown architecture {architecture!r}; known: "
                               f"{', '.join(known)}")


def resolve(config: ExperimentConfig) -> ExperimentConfig:
    """`config` with its "auto" settings decided: the architecture from the budget table,
    the outer precision for this machine (config.json records both)."""
    return config.resolved(default_architecture, resolve_outer_precision)


def teacher_budget(config: ExperimentConfig) -> TeacherBudget:
    return TeacherBudget(epochs=config.teacher_epochs, temperatures=config.teacher_temperatures,
                         epoch_choice=config.teacher_epoch_choice,
                         batch_size=config.teacher_batch_size)


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """The data of one run: the target's splits and the base examples."""

    target_raw: RawDataset
    target: TargetSplits
    base_images_uint8: np.ndarray   # as the models see them before normalisation
    base_images: np.ndarray         # normalised (and whitened, with `whitening`)
    base_labels: np.ndarray         # their classes in the source dataset
    base_indices: np.ndarray        # positions in the source's official train split
    source_origin: str              # the file or TFDS builder the base images came from
    whitening: ZCAStatistics | None = None  # fitted on target.train_images (--whitening=zca)


def run_experiment(config: ExperimentConfig, model_dir: str, verbose: bool = True,
                   requested: dict | None = None, recipe: dict | None = None,
                   finished: Callable[[], dict | None] | None = None) -> dict:
    """Runs one experiment and writes config.json, results.json, the distilled set
    and the pictures into model_dir.

    Every check that can fail on input (settings, the data, what model_dir already
    holds, whether it can be written) runs before the first file is written.
    `requested`: settings a caller filled in itself from defaults (the command line's
    budget table), as they were asked; config.json keeps them beside the resolved
    values, with every "auto" setting resolved here. `recipe`: what a named recipe set
    (experiments/flags.py's `apply_recipe`), recorded as config.json's recipe_expansion.
    `finished`: called once this process
    holds the folder; results it returns (another process finished the run between the
    caller's look and the lock) are returned as they are, and nothing runs.

    Returns the results dictionary. Raises DistillError for bad input, and
    NonFiniteError (a DistillError) when a meta step gives NaN or infinity.
    """
    check_available(config)
    asked = to_json_dict(config)
    config = resolve(config)
    settings = to_json_dict(config)
    identity = run_identity(settings)
    _check_model_dir_before_writing(model_dir, settings)
    start = time.perf_counter()
    inputs = load_inputs(config)
    times = {"data_seconds": time.perf_counter() - start}
    spec = inputs.target.spec
    factory = ModelFactory(config.architecture, spec.image_shape, spec.num_classes)
    solver = _solver(config, factory)
    for architecture in config.eval_architectures:  # fail now, not after hours of training
        _solver(config, dataclasses.replace(factory, architecture=architecture))
    config, choices = _resolve_device_choices(config, solver, inputs)
    prepare_output_dir(model_dir)
    # One process per run folder: a second one would write the same checkpoints.
    with exclusive_folder(model_dir):
        # Again, now that no other process can write here: one may have started a
        # different run in this folder between the read-only checks and the lock.
        check_model_dir(model_dir, settings)
        done = finished() if finished is not None else None
        if done is not None:
            return done
        _set_aside_results_of_fewer_epochs(model_dir, config.distill.epochs)
        config_record = {**settings, "run_identity": identity, "kerasdistill_version": __version__,
                         "tensorflow_version": tf.__version__, "python": platform.python_version(),
                         "device": device_description(), "resolved": choices,
                         "requested": {**(requested or {}), **_resolved_here(asked, settings)}}
        if recipe is not None:  # what --recipe set, and the flags given instead
            config_record["recipe_expansion"] = recipe
        write_json_atomic(os.path.join(model_dir, "config.json"), config_record)
        if verbose:
            target = inputs.target
            print(f"Target {config.target}: {len(target.train_images)} train / "
                  f"{len(target.validation_images)} validation / {len(target.test_images)} test; "
                  f"{len(inputs.base_images)} base examples from {config.source}", file=sys.stderr)

        trainer = EvaluationTrainer(solver, inputs.base_images, config.distill.inner_batch_size,
                                    augmentation=Augmentation(config.distill.augment))
        method = config.baseline if config.baseline != "none" else config.algorithm
        results: dict = {"method": method}
        if config.baseline == "none":
            labels, num_steps = _distill(config, solver, factory, trainer, inputs, model_dir,
                                         identity, results, times, verbose)
        else:
            labels, num_steps = _baseline_labels(config, factory, trainer, inputs, results, times,
                                                 verbose)
        _evaluate(config, factory, trainer, inputs, labels, num_steps, results, times)
        # total: this session's seconds and the earlier sessions' checkpointed ones, so a
        # resumed run's total is the run's, not its last process's.
        times["session_seconds"] = time.perf_counter() - start
        times["total_seconds"] = times["session_seconds"] + times.pop("earlier_sessions_seconds",
                                                                      0.0)
        results.update({
            "num_train_steps": int(num_steps),
            "labels": np.asarray(labels).tolist(),
            "base_indices": [int(i) for i in inputs.base_indices],
            "base_source_labels": [int(i) for i in inputs.base_labels],
            "source_origin": inputs.source_origin, "target_origin": inputs.target_raw.origin,
            "target_resplit": inputs.target_raw.resplit,
            "outer_precision": solver.outer_precision, "resolved": choices,
            "run_identity": identity, "epochs": config.distill.epochs,
            "wall_times": times,
        })
        if inputs.whitening is not None:
            results["whitening"] = inputs.whitening.fingerprint()
        specs = {"target": inputs.target.spec, "source": get_dataset_spec(config.source)}
        user_data = {role: user_data_record(spec) for role, spec in specs.items()
                     if spec.local_path}
        if user_data:  # a user's own files: what they held, for export and train to check
            results["user_data"] = user_data
        products = write_run_products(
            config_record, results, inputs.base_images_uint8, solver.recipe(),
            os.path.join(model_dir, DISTILLED_DIR), os.path.join(model_dir, PLOTS_DIR),
            inputs.whitening)
        results.update({"label_analysis": products.label_analysis,
                        "distilled_set": DISTILLED_DIR,
                        "plots": [f"{PLOTS_DIR}/{name}" for name in products.plots]})
        # Written last: a results.json marks a finished run.
        write_json_atomic(os.path.join(model_dir, "results.json"), results)
    if verbose:
        print(f"{results['method']}: test accuracy {100 * results['test_accuracy_mean']:.2f} "
              f"+- {100 * results['test_accuracy_std']:.2f} % over "
              f"{len(results['test_accuracies'])} models, {num_steps} training steps; "
              f"distilled set in {os.path.join(model_dir, DISTILLED_DIR)}", file=sys.stderr)
    return results


def _resolved_here(asked: dict, settings: dict) -> dict:
    """{setting: as asked} for each setting that resolution changed ("auto", None)."""
    changed = {key: value for key, value in asked.items()
               if key != "distill" and settings.get(key) != value}
    changed.update({f"distill.{key}": value for key, value in asked["distill"].items()
                    if settings["distill"].get(key) != value})
    return changed


def _resolve_device_choices(config: ExperimentConfig, solver, inputs: RunInputs):
    """The settings left to the machine ("auto"), decided here (measured where the
    rule says so) before config.json is written; returns (config with the choices
    filled in, a record of them)."""
    choices = {"outer_precision": solver.outer_precision,
               "evaluation_models_per_call": DEFAULT_MODELS_PER_CALL if solver.model_stack()
               else 1}
    if config.baseline != "none":
        return config, choices
    distill = config.distill
    outer = min(distill.outer_batch_size, len(inputs.target.train_images))
    jit_compile, record = choose_jit_compile(
        distill.jit_compile, solver, tf.constant(inputs.base_images),
        tf.constant(inputs.target.train_images[:outer]),
        tf.constant(inputs.target.train_labels[:outer].astype(np.int32)),
        distill.inner_batch_size, inputs.target.spec.num_classes,
        distributed=distill.distribute != "none")
    choices["jit_compile"] = record
    return dataclasses.replace(config, distill=dataclasses.replace(
        distill, jit_compile=jit_compile)), choices


def _check_model_dir_before_writing(model_dir: str, settings: dict):
    """Reads only: what model_dir holds must be this run, the folder must be creatable,
    and the set, written at the very end, must not meet a foreign folder after hours."""
    # First: a folder another process holds may have its checkpoint half-written.
    check_not_in_use(model_dir)
    check_model_dir(model_dir, settings)
    check_creatable(model_dir, "--model_dir")
    check_replaceable(os.path.join(model_dir, DISTILLED_DIR), "the run's distilled set folder")


def _set_aside_results_of_fewer_epochs(model_dir: str, epochs: int):
    """A finished run being extended: its results.json no longer describes the folder's
    config, so it becomes results.epochs-<E>.json until the longer run writes its own."""
    results_path = os.path.join(model_dir, "results.json")
    config_path = os.path.join(model_dir, "config.json")
    if not (os.path.exists(results_path) and os.path.exists(config_path)):
        return
    stored_epochs = read_json(config_path, "the run's config").get("distill", {}).get(
        "epochs", epochs)
    if stored_epochs < epochs:
        os.replace(results_path, os.path.join(model_dir, f"results.epochs-{stored_epochs}.json"))


def _load(config: ExperimentConfig, name: str) -> RawDataset:
    return load_dataset(name, config.data_dir, config.download, config.emnist_orientation,
                        config.npz_orientation)


def load_inputs(config: ExperimentConfig) -> RunInputs:
    """Loads the target and source data and chooses the base examples (reads only)."""
    target_raw = as_target(_load(config, config.target), config.target_split)
    target = split_target(target_raw, config.distill.seed, config.num_validation,
                          config.target_set_size)
    if config.source == config.target:
        # The whole training pool, not a target_set_size cut of it: the base images stay
        # the same across target-set sizes (docs/method.md section 5.5 varies the targets only).
        candidate_positions = target.base_pool_positions
        candidate_labels = target_raw.train_labels[candidate_positions]
        candidate_images = target_raw.train_images[candidate_positions]
        source_origin = target_raw.origin
    else:
        source_raw = _load(config, config.source).require(
            "train", "a source (base images come from its training split)")
        candidate_labels = source_raw.train_labels
        candidate_positions = np.arange(len(source_raw.train_labels))
        candidate_images = source_raw.train_images
        source_origin = source_raw.origin
    chosen = select_base_examples(candidate_labels, config.distill.num_base_examples,
                                  get_dataset_spec(config.source).num_classes,
                                  config.base_selection == "balanced", config.distill.seed)
    images_uint8 = base_images_of(candidate_images, chosen, target.spec.image_shape)
    base_images = normalize_images(images_uint8, target.spec)
    whitening = fit_run_whitening(config.whitening, config.zca_regularization,
                                  target.train_images)
    if whitening is not None:
        target = target.whitened(whitening)
        base_images = whitening(base_images)
    return RunInputs(target_raw=target_raw, target=target, base_images_uint8=images_uint8,
                     base_images=base_images, base_labels=candidate_labels[chosen],
                     base_indices=candidate_positions[chosen], source_origin=source_origin,
                     whitening=whitening)


def _distill(config, solver, factory, trainer, inputs: RunInputs, model_dir, identity, results,
             times, verbose):
    starting_labels = None
    if config.label_init != "uniform":
        def starting_labels():
            begin = time.perf_counter()
            start = _starting_labels(config, factory, trainer, inputs, verbose)
            times["starting_labels_seconds"] = time.perf_counter() - begin
            return start
    distilled = distill_labels(
        solver, config.distill, inputs.base_images, inputs.target,
        checkpoint_dir=os.path.join(model_dir, "checkpoint"),
        tensorboard_dir=os.path.join(model_dir, "tensorboard"), verbose=verbose,
        identity=identity, starting_labels=starting_labels,
        validation_checkpoints=baseline_checkpoints(config.distill.num_base_examples,
                                                    config.baseline_max_steps)
        if config.validation_steps == "search" else None)
    times["meta_train_seconds"] = distilled.meta_train_seconds
    times["validation_seconds"] = distilled.validation_seconds
    times["earlier_sessions_seconds"] = distilled.earlier_sessions_seconds
    results.update({
        "validation_error": distilled.validation_error,
        "validation_curve": distilled.validation_curve,
        "reset_points": distilled.reset_points, "meta_steps": distilled.meta_steps,
        "final_labels": distilled.final_soft_labels.tolist(),
        "resumed_from_epoch": distilled.resumed_from_epoch,
        "starting_labels": distilled.starting_labels,
        # True when no validation point of meta-learning beat the labels it started from.
        "kept_starting_labels": bool(distilled.validation_curve) and
        distilled.validation_curve[0].get("starting_labels", False) and
        all(point["validation_error"] > distilled.validation_error
            for point in distilled.validation_curve[1:])})
    return distilled.soft_labels, distilled.num_train_steps


def _starting_labels(config, factory, trainer, inputs: RunInputs, verbose) -> StartingLabels:
    """The labels meta-learning starts from (config.label_init), with the step count
    they are scored at: the baselines' search on validation (docs/method.md section 3)."""
    checkpoints = baseline_checkpoints(config.distill.num_base_examples,
                                       config.baseline_max_steps)
    seed = derive_seed(config.distill.seed, BASELINE)
    if config.label_init == "teacher":
        labels, num_steps, record = _teacher_labelling(config, factory, trainer, inputs,
                                                       checkpoints, seed, verbose)
        record = {"teacher": record}
    else:  # one_hot
        labels = np.eye(inputs.target.spec.num_classes, dtype=np.float32)[inputs.base_labels]
        num_steps, curve = choose_num_steps(trainer, labels, checkpoints, seed,
                                            inputs.target.validation_images,
                                            inputs.target.validation_labels)
        record = {"step_search": curve}
    return StartingLabels(labels=labels, num_train_steps=num_steps,
                          record={"label_init": config.label_init,
                                  "num_train_steps": int(num_steps), **record})


def _teacher_labelling(config, factory, trainer, inputs: RunInputs, checkpoints, seed,
                       verbose):
    """The teacher's labels of the base images at the temperature validation chooses;
    returns (labels, step count, record of the teacher and the temperature search)."""
    begin = time.perf_counter()
    budget = teacher_budget(config)
    epoch_weights = [] if budget.epoch_choice == "search" else None
    teacher_seed = config.distill.seed if config.teacher_seed is None else config.teacher_seed
    teacher, record = train_teacher(factory, inputs.target, budget,
                                    derive_seed(teacher_seed, TEACHER),
                                    verbose=2 if verbose else 0, epoch_weights=epoch_weights)
    teacher_seconds = time.perf_counter() - begin
    labels, num_steps, choice = teacher_labels(teacher, inputs.base_images, trainer, budget,
                                               checkpoints, seed, inputs.target, epoch_weights)
    return labels, num_steps, {**record, **choice, "teacher_seconds": teacher_seconds}


def _baseline_labels(config, factory, trainer, inputs: RunInputs, results, times, verbose):
    """A fixed labelling of the base images (BASELINES), with the step count chosen on
    validation as docs/method.md section 3 says for the baselines."""
    target, num_classes = inputs.target, inputs.target.spec.num_classes
    checkpoints = baseline_checkpoints(config.distill.num_base_examples,
                                       config.baseline_max_steps)
    seed = derive_seed(config.distill.seed, BASELINE)
    start = time.perf_counter()
    if config.baseline == "teacher":
        labels, num_steps, record = _teacher_labelling(config, factory, trainer, inputs,
                                                       checkpoints, seed, verbose)
        times["teacher_seconds"] = record.pop("teacher_seconds")
        times["validation_seconds"] = time.perf_counter() - start - times["teacher_seconds"]
        best = min(record["temperature_search"], key=lambda c: c["validation_error"])
        results.update({"teacher": record, "validation_error": best["validation_error"],
                        "validation_curve": best["curve"]})
        return labels, num_steps
    if config.baseline == "class_mapping":
        source_classes = get_dataset_spec(config.source).num_classes
        source_solver = _solver(config, dataclasses.replace(factory, num_classes=source_classes))
        source_trainer = EvaluationTrainer(source_solver, inputs.base_images,
                                           config.distill.inner_batch_size,
                                           augmentation=Augmentation(config.distill.augment))
        labels, mapping = class_mapping_labels(
            source_trainer, inputs.base_labels, source_classes, num_classes, checkpoints,
            derive_seed(config.distill.seed, CLASS_MAPPING), target)
        results["class_mapping"] = mapping
    elif config.baseline == "uniform":
        labels = uniform_labels(len(inputs.base_images), num_classes)
    else:
        labels = np.eye(num_classes, dtype=np.float32)[inputs.base_labels]
        if config.baseline == "label_smoothing":
            labels = labels * (1.0 - config.label_smoothing) + config.label_smoothing / num_classes
    num_steps, curve = choose_num_steps(trainer, labels, checkpoints, seed,
                                        target.validation_images, target.validation_labels)
    times["validation_seconds"] = time.perf_counter() - start
    results.update({"validation_error": min(p["validation_error"] for p in curve),
                    "validation_curve": curve})
    return labels, num_steps


def _evaluate(config, factory, trainer, inputs: RunInputs, labels, num_steps, results, times):
    """The test repetitions, then the transfer evaluations that were asked for."""
    target = inputs.target
    test_start = time.perf_counter()
    seeds = [derive_seed(config.distill.seed, TEST, i) for i in range(config.test_repetitions)]
    accuracies = trainer.test_accuracies(labels, num_steps, seeds, target.test_images,
                                         target.test_labels)
    times["test_seconds"] = time.perf_counter() - test_start
    results.update(summary(accuracies))

    transfer_start = time.perf_counter()
    transfer_seeds = seeds[:config.transfer_repetitions or config.test_repetitions]
    if config.eval_architectures:
        results["architecture_transfer"] = {}
        for architecture in config.eval_architectures:
            other = _solver(config, dataclasses.replace(factory, architecture=architecture))
            other_trainer = EvaluationTrainer(other, inputs.base_images,
                                              config.distill.inner_batch_size,
                                              augmentation=Augmentation(config.distill.augment))
            results["architecture_transfer"][architecture] = summary(other_trainer.test_accuracies(
                labels, num_steps, transfer_seeds, target.test_images, target.test_labels))
    if config.step_offsets:
        results["step_offsets"] = step_offset_transfer(
            trainer, labels, num_steps, config.step_offsets, transfer_seeds,
            target.test_images, target.test_labels)
    if config.eval_optimizers:
        results["optimizer_transfer"] = optimizer_transfer(
            factory, config.eval_optimizers, inputs.base_images, labels, num_steps,
            config.distill.inner_batch_size, transfer_seeds, target.test_images,
            target.test_labels)
        if config.algorithm == "second_order":
            # The protocol's own Adam (PyTorch's form), on the same seeds: the test models
            # (LD RR's are ridge-regression models, not comparable with model.fit LeNets).
            results["optimizer_transfer"]["protocol_adam"] = summary(
                accuracies[:len(transfer_seeds)])
    if config.eval_architectures or config.step_offsets or config.eval_optimizers:
        times["transfer_seconds"] = time.perf_counter() - transfer_start


def _solver(config: ExperimentConfig, factory: ModelFactory):
    return build_solver(config.algorithm, factory, outer_splits=config.outer_splits,
                        hypergradient=config.hypergradient,
                        outer_precision=config.outer_precision,
                        unroll_steps=config.unroll_steps if config.algorithm == "second_order"
                        else 1, learner_pool=config.learner_pool,
                        horizon_steps=config.horizon_steps)
