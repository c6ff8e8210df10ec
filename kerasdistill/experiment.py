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

from kerasdistill import __version__
from kerasdistill.budget import default_architecture
from kerasdistill.data.loading import ORIENTATIONS, RawDataset, load_dataset
from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.data.user_data import user_data_record
from kerasdistill.data.resplit import TARGET_SPLITS, as_target
from kerasdistill.data.whitening import (DEFAULT_ZCA_REGULARIZATION, WHITENINGS, ZCAStatistics,
                                         check_zca_regularization)
from kerasdistill.data.splits import (TargetSplits, normalize_images, select_base_examples,
                                      split_target)
from kerasdistill.distill.autotune import choose_jit_compile
from kerasdistill.distill.loop import DistillConfig, StartingLabels, distill_labels
from kerasdistill.distill.registry import ALGORITHMS, build_solver
from kerasdistill.errors import DistillError, require_one_of
from kerasdistill.hardware import (DEFAULT_OUTER_PRECISION, OUTER_PRECISIONS,
                                   device_description, resolve_outer_precision)
from kerasdistill.evaluation.training import (DEFAULT_MODELS_PER_CALL, EvaluationTrainer,
                                              baseline_checkpoints, choose_num_steps)
from kerasdistill.evaluation.label_baselines import (TeacherBudget, class_mapping_labels,
                                                     teacher_labels, train_teacher,
                                                     uniform_labels)
from kerasdistill.evaluation.transfer import (OPTIMIZERS, optimizer_transfer,
                                              step_offset_transfer, summary)
from kerasdistill.distill.horizon import WholeRunSolver, check_horizon_steps
from kerasdistill.distill.learner_pool import LearnerPool
from kerasdistill.distill.second_order import HYPERGRADIENT_MODES, check_unroll_steps
from kerasdistill.export.distilled_set import check_replaceable
from kerasdistill.export.run_export import (DISTILLED_DIR, PLOTS_DIR, base_images_of,
                                            write_run_products)
from kerasdistill.files import (check_creatable, check_not_in_use, exclusive_folder,
                               prepare_output_dir, read_json, write_json_atomic)
from kerasdistill.models import ModelFactory, architecture_names
from kerasdistill.run_identity import check_model_dir, run_identity
from kerasdistill.seeding import BASELINE, CLASS_MAPPING, TEACHER, TEST, derive_seed

# Fixed labellings run through the same protocol as learned labels (SPEC 3):
# true_labels and label_smoothing need base images of the target's classes; teacher
# labels any base images; uniform and class_mapping are the cross-dataset references
# (class_mapping: each source class to one target class, chosen on validation).
BASELINES = ("none", "true_labels", "label_smoothing", "teacher", "uniform", "class_mapping")
_NEEDS_TARGET_CLASSES = ("true_labels", "label_smoothing")
BASE_SELECTIONS = ("auto", "balanced", "unbalanced")
# Where meta-learning starts (issue 13): the paper's uniform labels, the base images'
# one-hot classes, or the teacher baseline's labels (its validated temperature).
LABEL_INITS = ("uniform", "one_hot", "teacher")
# The step count each validation point scores its labels at: the learner's (steps since
# its last reset, SPEC 3, the paper's), or the labels' own, searched as for a baseline.
VALIDATION_STEPS = ("learner", "search")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; `resolved()` fills the defaults that depend on the data
    and the machine (config.json records the resolved values)."""

    distill: DistillConfig
    target: str = "mnist"
    source: str | None = None          # None: the target itself
    algorithm: str = "second_order"
    architecture: str = "auto"        # auto: SPEC 3's table (LeNet greyscale, AlexNet colour)
    baseline: str = "none"
    label_smoothing: float = 0.1
    baseline_max_steps: int | None = None  # None: SPEC 3's search up to 1000 / 1700 steps
    teacher_epochs: int = TeacherBudget.epochs
    teacher_temperatures: tuple = TeacherBudget.temperatures
    teacher_epoch_choice: str = TeacherBudget.epoch_choice  # TEACHER_EPOCH_CHOICES
    base_selection: str = "auto"       # auto: balanced within a dataset, unbalanced across
    # EMNIST's images as the models see them: "as_stored" (transposed, as torchvision
    # gave them to the paper's runs) or "upright"; and how a local emnist_letters.npz
    # holds them (kerasdistill.data.loading.ORIENTATIONS).
    emnist_orientation: str = "as_stored"
    npz_orientation: str = "as_stored"
    # TARGET_SPLITS: "from_test" re-splits a target that has only its test split
    # (data/resplit.py), recorded; never chosen silently.
    target_split: str = "official"
    test_repetitions: int = 20
    data_dir: str | None = None
    download: bool = False
    num_validation: int | None = None  # None: the protocol's (10,000 for MNIST)
    target_set_size: int | None = None
    outer_splits: int = 2
    hypergradient: str = "forward"
    outer_precision: str = DEFAULT_OUTER_PRECISION  # one of OUTER_PRECISIONS
    eval_architectures: tuple = ()     # architecture transfer (SPEC 5.3)
    eval_optimizers: tuple = ()        # optimizer transfer with model.fit (SPEC 5.4)
    step_offsets: tuple = ()           # learned step count shifted (SPEC 5.4)
    transfer_repetitions: int | None = None  # None: test_repetitions
    label_init: str = "uniform"        # LABEL_INITS
    unroll_steps: int = 1              # K inner SGD steps per hypergradient (second_order)
    validation_steps: str = "learner"  # VALIDATION_STEPS
    learner_pool: int = 1              # learners per meta step (learner_pool.py); 1: the paper's
    horizon_steps: int = 0             # T: outer loss after T steps of a fresh model (horizon.py)
    whitening: str = "none"            # WHITENINGS: "zca" whitens every image (data/whitening.py)
    zca_regularization: float = DEFAULT_ZCA_REGULARIZATION

    def resolved(self) -> "ExperimentConfig":
        source = self.source or self.target
        selection = self.base_selection
        if selection == "auto":
            selection = "balanced" if source == self.target else "unbalanced"
        architecture = (default_architecture(self.target) if self.architecture == "auto"
                        else self.architecture)
        return dataclasses.replace(self, source=source, base_selection=selection,
                                   architecture=architecture,
                                   outer_precision=resolve_outer_precision(self.outer_precision))

    def check(self):
        """Raises DistillError for any setting that cannot work, before any data is read."""
        get_dataset_spec(self.target)
        get_dataset_spec(self.source or self.target)
        if self.algorithm not in ALGORITHMS:
            raise DistillError(
                f"unknown algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}")
        if self.architecture != "auto" and self.architecture not in architecture_names():
            raise DistillError(f"unknown architecture {self.architecture!r}; known: "
                               f"{', '.join(architecture_names())}")
        if self.baseline not in BASELINES:
            raise DistillError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.base_selection not in BASE_SELECTIONS:
            raise DistillError(
                f"base_selection must be one of {BASE_SELECTIONS}, got {self.base_selection!r}")
        if self.test_repetitions <= 0:
            raise DistillError(f"test_repetitions must be positive, got {self.test_repetitions}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise DistillError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        require_one_of("outer_precision", self.outer_precision, OUTER_PRECISIONS)
        require_one_of("emnist_orientation", self.emnist_orientation, ORIENTATIONS)
        require_one_of("npz_orientation", self.npz_orientation, ORIENTATIONS)
        require_one_of("target_split", self.target_split, TARGET_SPLITS)
        require_one_of("hypergradient", self.hypergradient, HYPERGRADIENT_MODES)
        if self.outer_splits <= 0:
            raise DistillError(f"outer_splits must be positive, got {self.outer_splits}")
        unknown = sorted(set(self.eval_architectures) - set(architecture_names()))
        if unknown:
            raise DistillError(f"unknown eval architectures {unknown}; known: "
                               f"{', '.join(architecture_names())}")
        unknown = sorted(set(self.eval_optimizers) - set(OPTIMIZERS))
        if unknown:
            raise DistillError(f"unknown eval optimizers {unknown}; known: {', '.join(OPTIMIZERS)}")
        if self.transfer_repetitions is not None and self.transfer_repetitions <= 0:
            raise DistillError(
                f"transfer_repetitions must be positive, got {self.transfer_repetitions}")
        if self.baseline in _NEEDS_TARGET_CLASSES and (self.source or self.target) != self.target:
            raise DistillError(f"the {self.baseline} baseline needs base examples from the target "
                               f"dataset (its labels are target classes); drop --source, or use "
                               f"--baseline=class_mapping, uniform or teacher across datasets")
        if self.baseline == "class_mapping" and (self.source or self.target) == self.target:
            raise DistillError("--baseline=class_mapping maps source classes to target classes: "
                               "it needs --source (another dataset); within a dataset use "
                               "--baseline=true_labels")
        require_one_of("label_init", self.label_init, LABEL_INITS)
        require_one_of("validation_steps", self.validation_steps, VALIDATION_STEPS)
        if self.validation_steps != "learner" and self.baseline != "none":
            raise DistillError(f"--validation_steps={self.validation_steps} concerns learned "
                               f"labels; a baseline always searches its step count")
        if self.label_init != "uniform" and self.baseline != "none":
            raise DistillError(f"--label_init={self.label_init} starts meta-learning; a "
                               f"baseline (--baseline={self.baseline}) learns nothing")
        if self.label_init == "one_hot" and (self.source or self.target) != self.target:
            raise DistillError("--label_init=one_hot needs base examples from the target "
                               "dataset (their classes are target classes); across datasets "
                               "use --label_init=teacher or uniform")
        if self.unroll_steps != 1 and self.algorithm != "second_order":
            raise DistillError(f"--unroll_steps={self.unroll_steps} is for "
                               f"--algorithm=second_order; ridge regression solves its inner "
                               f"problem in closed form")
        check_unroll_steps(self.unroll_steps, self.hypergradient)
        if isinstance(self.learner_pool, bool) or not isinstance(self.learner_pool, int) \
                or self.learner_pool < 1:
            raise DistillError(f"learner_pool must be a positive integer, got "
                               f"{self.learner_pool!r}")
        if self.learner_pool > 1 and self.baseline != "none":
            raise DistillError(f"--learner_pool={self.learner_pool} learns labels; a baseline "
                               f"(--baseline={self.baseline}) learns nothing")
        if self.learner_pool > 1 and self.validation_steps != "search":
            raise DistillError(f"--learner_pool={self.learner_pool} needs "
                               f"--validation_steps=search: "
                               f"{LearnerPool.needs_searched_validation}")
        self._check_horizon()
        require_one_of("whitening", self.whitening, WHITENINGS)
        check_zca_regularization(self.zca_regularization)
        if self.whitening != "zca" and self.zca_regularization != DEFAULT_ZCA_REGULARIZATION:
            raise DistillError(f"--zca_regularization={self.zca_regularization} is the strength "
                               f"of ZCA whitening: it needs --whitening=zca")
        if self.label_init == "one_hot" and self.distill.label_parameterization == "softmax":
            raise DistillError("--label_init=one_hot with --label_parameterization=softmax "
                               "cannot move: a softmax's gradient vanishes at exact 0 and 1; "
                               "use clip, or start from the teacher")
        self.teacher_budget()  # validates the teacher's settings
        if self.baseline_max_steps is not None and self.baseline_max_steps < 10:
            raise DistillError(f"baseline_max_steps must be at least 10 (the first point of "
                               f"the step search), got {self.baseline_max_steps}")

    def _check_horizon(self):
        check_horizon_steps(self.horizon_steps)
        if not self.horizon_steps:
            return
        flag = f"--horizon_steps={self.horizon_steps}"
        if self.algorithm != "second_order":
            raise DistillError(f"{flag} trains models by gradient steps: it needs "
                               f"--algorithm=second_order")
        if self.baseline != "none":
            raise DistillError(f"{flag} learns labels; a baseline (--baseline="
                               f"{self.baseline}) learns nothing")
        if self.unroll_steps != 1 or self.learner_pool != 1:
            raise DistillError(f"{flag} replaces the K-step look-ahead and the learner pool: "
                               f"drop --unroll_steps and --learner_pool")
        if self.hypergradient != "reverse":
            raise DistillError(f"{flag} needs --hypergradient=reverse: the forward-mode "
                               f"hypergradient is exact for one inner step only")
        if self.validation_steps != "search":
            raise DistillError(f"{flag} needs --validation_steps=search: "
                               f"{WholeRunSolver.needs_searched_validation}")

    def teacher_budget(self) -> TeacherBudget:
        return TeacherBudget(epochs=self.teacher_epochs,
                             temperatures=tuple(float(t) for t in self.teacher_temperatures),
                             epoch_choice=self.teacher_epoch_choice)


def to_json_dict(config: ExperimentConfig) -> dict:
    return dataclasses.asdict(config)


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
                   requested: dict | None = None,
                   finished: Callable[[], dict | None] | None = None) -> dict:
    """Runs one experiment and writes config.json, results.json, the distilled set
    and the pictures into model_dir.

    Every check that can fail on input (settings, the data, what model_dir already
    holds, whether it can be written) runs before the first file is written.
    `requested`: settings a caller filled in itself from defaults (the command line's
    budget table), as they were asked; config.json keeps them beside the resolved
    values, with every "auto" setting resolved here. `finished`: called once this process
    holds the folder; results it returns (another process finished the run between the
    caller's look and the lock) are returned as they are, and nothing runs.

    Returns the results dictionary. Raises DistillError for bad input, and
    NonFiniteError (a DistillError) when a meta step gives NaN or infinity.
    """
    config.check()
    asked = to_json_dict(config)
    config = config.resolved()
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
        write_json_atomic(os.path.join(model_dir, "config.json"), config_record)
        if verbose:
            target = inputs.target
            print(f"Target {config.target}: {len(target.train_images)} train / "
                  f"{len(target.validation_images)} validation / {len(target.test_images)} test; "
                  f"{len(inputs.base_images)} base examples from {config.source}", file=sys.stderr)

        trainer = EvaluationTrainer(solver, inputs.base_images, config.distill.inner_batch_size,
                                    augmentation=config.distill.augmentation)
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
        # the same across target-set sizes (SPEC 5.5 varies the targets only).
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
    whitening = run_whitening(config, target)
    if whitening is not None:
        target = target.whitened(whitening)
        base_images = whitening(base_images)
    return RunInputs(target_raw=target_raw, target=target, base_images_uint8=images_uint8,
                     base_images=base_images, base_labels=candidate_labels[chosen],
                     base_indices=candidate_positions[chosen], source_origin=source_origin,
                     whitening=whitening)


def run_whitening(config, target: TargetSplits) -> ZCAStatistics | None:
    """The run's ZCA whitening, fitted on its training split (never on validation or
    test images), or None. `config`: an ExperimentConfig or a config.json dict."""
    settings = config if isinstance(config, dict) else to_json_dict(config)
    if settings.get("whitening", "none") == "none":
        return None
    return ZCAStatistics.fit(target.train_images, settings["zca_regularization"])


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
    they are scored at: the baselines' search on validation (SPEC 3)."""
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
    budget = config.teacher_budget()
    epoch_weights = [] if budget.epoch_choice == "search" else None
    teacher, record = train_teacher(factory, inputs.target, budget,
                                    derive_seed(config.distill.seed, TEACHER),
                                    verbose=2 if verbose else 0, epoch_weights=epoch_weights)
    teacher_seconds = time.perf_counter() - begin
    labels, num_steps, choice = teacher_labels(teacher, inputs.base_images, trainer, budget,
                                               checkpoints, seed, inputs.target, epoch_weights)
    return labels, num_steps, {**record, **choice, "teacher_seconds": teacher_seconds}


def _baseline_labels(config, factory, trainer, inputs: RunInputs, results, times, verbose):
    """A fixed labelling of the base images (BASELINES), with the step count chosen on
    validation as SPEC 3 says for the baselines."""
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
                                           augmentation=config.distill.augmentation)
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
                                              augmentation=config.distill.augmentation)
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
