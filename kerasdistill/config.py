"""The settings of a run, each defined once: name, default, choices, check, help.

Every setting is a field of `DistillConfig` (the distillation loop's) or of
`ExperimentConfig` (the run's: data, solver, baselines, evaluation), declared with
`option(...)`. From that one declaration come:

- the check: each option's value is checked when the config is made
  (`__post_init__`), so no value reaches the library unchecked; rules that join
  several options are stated once below (`check_rules` and the `rule_*` functions
  the solvers call too);
- the command-line flags (`experiments/flags.py` defines them from these fields);
- what the run's identity leaves out (`distill/identity.py`: settings that are free
  to change, or omitted at their default because older runs did not record them).

Adding an option is one `option(...)` line here, its use, its test and its doc line.

This module imports neither TensorFlow nor any other layer of the library (only
`errors`), so every layer may import it and `--help` stays instant. Checks that
need the data or the model registry (does the dataset exist, is the architecture
registered) run when the run starts (`experiment.check_available`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from kerasdistill.errors import DistillError

# --- The choices, each tuple defined here only --------------------------------------
ALGORITHMS = ("second_order", "ridge_regression")
# Fixed labellings run through the same protocol as learned labels (docs/method.md
# section 3): true_labels and label_smoothing need base images of the target's classes;
# teacher labels any base images; uniform and class_mapping are the cross-dataset
# references (class_mapping: each source class to one target class, chosen on validation).
BASELINES = ("none", "true_labels", "label_smoothing", "teacher", "uniform", "class_mapping")
NEEDS_TARGET_CLASSES = ("true_labels", "label_smoothing")
BASE_SELECTIONS = ("auto", "balanced", "unbalanced")
# Where meta-learning starts: the paper's uniform labels, the base images' one-hot
# classes, or the teacher baseline's labels (its validated temperature).
LABEL_INITS = ("uniform", "one_hot", "teacher")
# The step count each validation point scores its labels at: the learner's (steps since
# its last reset, the paper's), or the labels' own, searched as for a baseline.
VALIDATION_STEPS = ("learner", "search")
# How Adam's step reaches the labels. "clip": Adam on the labels, then clipped to [0, 1]
# and renormalised (docs/method.md section 2, the paper's). "softmax": the labels are
# softmax(z) of learned logits z, and Adam steps z.
LABEL_PARAMETERIZATIONS = ("clip", "softmax")
HYPERGRADIENT_MODES = ("forward", "reverse")
# "auto": float32, or bf16 convolutions where the CPU has native bf16 (hardware.py).
OUTER_PRECISIONS = ("auto", "float32", "mixed_conv_bfloat16")
DEFAULT_OUTER_PRECISION = "float32"
JIT_CHOICES = ("auto", True, False)
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
# EMNIST's images: as stored (transposed, what torchvision gave the paper's runs) or upright.
ORIENTATIONS = ("as_stored", "upright")
# "from_test": a target with only its test split is re-split (data/resplit.py), recorded.
TARGET_SPLITS = ("official", "from_test")
WHITENINGS = ("none", "zca")
DEFAULT_ZCA_REGULARIZATION = 0.1
# Which of the teacher's epochs labels the base images: the one of best validation
# accuracy (the teacher's own measure), or the one whose labels train the best model on
# validation, searched with the temperature (the teacher's epochs move its labels' score
# by more than a point, so a baseline held at its best searches them).
TEACHER_EPOCH_CHOICES = ("best_accuracy", "search")
# Applied in this order (data/augmentation.py); the order is part of the recipe.
AUGMENTATIONS = ("crop", "flip", "colour")
OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "rmsprop")
# The models experiments.train trains: the set's kind, ordinary Keras models, or the
# ridge-regression models LD RR's labels were learned for.
MODEL_KINDS = ("auto", "ordinary", "ridge_regression")

# Recipes: a name for a set of settings, expanded before anything runs
# (experiments/flags.py's `apply_recipe`). A flag given on the command line wins over
# its recipe's value; config.json records the recipe asked and what it set.
RECIPES = {
    # The paper's protocol: the defaults, unchanged.
    "paper": {},
    # The whole-run horizon (docs/method.md section 8): each meta step trains a fresh model
    # through 200 steps from the teacher's labels (softmax logits), the step count searched
    # on validation; 2 epochs of meta steps and a 2-epoch teacher. MNIST n = 100: 93.36 +-
    # 0.24 over 3 seeds in 8.6-11.0 minutes, against the paper's recipe's 86.61 in about 25.
    "horizon": {"label_init": "teacher", "label_parameterization": "softmax",
                "validation_steps": "search", "horizon_steps": 200,
                "hypergradient": "reverse", "label_learning_rate": 0.01, "epochs": 2,
                "validation_every_epochs": 1, "teacher_epochs": 2},
}
RECIPE_NAMES = tuple(RECIPES)

# The budgets experiments.reproduce runs a plan at (reproduction/plans.py): the paper's,
# about an hour per experiment on 2 CPU cores, and a tiny one for tests.
BUDGETS = ("paper", "cpu", "smoke")

# What a setting is to the run's identity (distill/identity.py).
IDENTITY, FREE, EXTENSIBLE = "identity", "free", "extensible"


# --- Checks: each raises DistillError naming the option -----------------------------
Check = Callable[[str, Any], None]


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def at_least(low: int) -> Check:
    def check(name, value):
        if not _is_whole(value) or value < low:
            raise DistillError(f"{name} must be a whole number >= {low}, got {value!r}")
    return check


positive = at_least(1)
non_negative = at_least(0)


def seed_value(name, value):
    # Seeds are folded into 32-bit counters (seeding.py): anything else would wrap.
    if not _is_whole(value) or not 0 <= value < 2 ** 31:
        raise DistillError(f"{name} must be a whole number in [0, 2^31), got {value!r}")


def positive_number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise DistillError(f"{name} must be a finite number > 0, got {value!r}")


def fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0.0 <= value < 1.0:
        raise DistillError(f"{name} must be in [0, 1), got {value!r}")


def optional(check: Check) -> Check:
    def optional_check(name, value):
        if value is not None:
            check(name, value)
    return optional_check


def each(check: Check, distinct: bool = False, at_least_one: bool = False) -> Check:
    def check_each(name, values):
        if at_least_one and not len(values):
            raise DistillError(f"{name} needs at least one value")
        for value in values:
            check(name, value)
        if distinct and len(set(values)) != len(values):
            raise DistillError(f"{name} must not repeat a value, got {list(values)}")
    return check_each


def one_of(choices) -> Check:
    def check(name, value):
        if value not in choices:
            raise DistillError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return check


def boolean(name, value):
    if not isinstance(value, bool):
        raise DistillError(f"{name} must be True or False, got {value!r}")


def name_text(name, value):
    if not isinstance(value, str) or not value:
        raise DistillError(f"{name} must be a non-empty name, got {value!r}")


# --- Declaring an option ------------------------------------------------------------
FIELD_DEFAULT = "<the field's default>"  # OptionInfo.flag_default unless the flag has its own


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """What a field's metadata says about its option (see `option`)."""

    help: str
    choices: tuple | None = None
    check: Check | None = None
    flag: bool = True                # False: a library setting with no command-line flag
    flag_default: Any = FIELD_DEFAULT  # the flag's, when not the field's
    item: type | None = None         # lists: the type of one item (int, float, str)
    identity: str = IDENTITY         # IDENTITY, FREE or EXTENSIBLE
    omitted_at_default: bool = False  # added after runs had recorded identities
    # The part of a run that reads it (distill/identity.py's USES): elsewhere it changes
    # nothing, so the identity leaves it out. None: every run reads it.
    applies: str | None = None


def option(default=dataclasses.MISSING, help: str = "", *, choices=None, check=None,
           flag: bool = True, flag_default=FIELD_DEFAULT, item=None,
           identity: str = IDENTITY, omitted_at_default: bool = False,
           applies: str | None = None):
    """A config field with everything its flag, its check and its identity need."""
    info = OptionInfo(help=help, choices=tuple(choices) if choices is not None else None,
                      check=check if check is not None else (
                          one_of(choices) if choices is not None else None),
                      flag=flag, flag_default=flag_default, item=item, identity=identity,
                      omitted_at_default=omitted_at_default, applies=applies)
    kwargs = {} if default is dataclasses.MISSING else {"default": default}
    return dataclasses.field(metadata={"option": info}, **kwargs)


def option_info(field: dataclasses.Field) -> OptionInfo | None:
    return field.metadata.get("option")


def options_of(config_class) -> list[tuple[dataclasses.Field, OptionInfo]]:
    """The (field, info) pairs of a config class, in declaration order."""
    return [(field, option_info(field)) for field in dataclasses.fields(config_class)
            if option_info(field) is not None]


def check_options(config) -> None:
    """Runs every option's own check on `config`'s values."""
    for field, info in options_of(type(config)):
        if info.check is not None:
            info.check(field.name, getattr(config, field.name))


def canonical_augment(operations) -> tuple:
    """The augmentation's one spelling: distinct names of AUGMENTATIONS, in their order."""
    operations = tuple(operations)
    unknown = [op for op in operations if op not in AUGMENTATIONS]
    if unknown or len(set(operations)) != len(operations):
        raise DistillError(f"augment must be distinct names from {AUGMENTATIONS}, got "
                           f"{list(operations)}")
    return tuple(op for op in AUGMENTATIONS if op in operations)


# --- Rules that join several options, each stated once ------------------------------
def rule_unroll_steps(unroll_steps: int, hypergradient: str, algorithm: str = "second_order"):
    positive("unroll_steps", unroll_steps)
    if unroll_steps != 1 and algorithm != "second_order":
        raise DistillError(f"unroll_steps={unroll_steps} is for --algorithm=second_order; "
                           f"ridge regression solves its inner problem in closed form")
    if unroll_steps > 1 and hypergradient != "reverse":
        raise DistillError(
            f"unroll_steps={unroll_steps} needs hypergradient='reverse' (--hypergradient="
            f"reverse): the forward-mode hypergradient is exact for one inner step only")


def rule_horizon(horizon_steps: int, algorithm: str, hypergradient: str, unroll_steps: int,
                 learner_pool: int):
    non_negative("horizon_steps", horizon_steps)
    if not horizon_steps:
        return
    flag = f"--horizon_steps={horizon_steps}"
    if algorithm != "second_order":
        raise DistillError(f"{flag} trains models by gradient steps: it needs "
                           f"--algorithm=second_order")
    if unroll_steps != 1 or learner_pool != 1:
        raise DistillError(f"{flag} replaces the K-step look-ahead and the learner pool: "
                           f"drop --unroll_steps and --learner_pool")
    if hypergradient != "reverse":
        raise DistillError(f"{flag} needs --hypergradient=reverse: the forward-mode "
                           f"hypergradient is exact for one inner step only")


def rule_jit_with_distribute(jit_compile, distribute: str):
    if jit_compile is True and distribute != "none":
        raise DistillError("jit_compile=True with distribute is not supported (XLA around "
                           "tf.distribute's strategy.run is untested here); use auto")


# --- The two configs ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Settings of the distillation loop (docs/method.md sections 2 and 3); defaults are
    the paper's."""

    num_base_examples: int = option(help="n: number of base examples.", check=positive,
                                    flag_default=100)
    inner_batch_size: int = option(
        help="n_i: inner minibatch size (default: the paper's for n: 10->10, 20->10, "
             "50->25, 100->50, 200->50, 500->50; CIFAR-100 n=100: 100).",
        check=positive, flag_default=None)
    epochs: int = option(400, "Epochs over the target training split (default: the "
                         "paper's: 400 up to n = 100, 800 above and for CIFAR-100; "
                         "Kuzushiji-49 100 / 200).", check=positive, flag_default=None,
                         identity=EXTENSIBLE)
    outer_batch_size: int = option(1024, "Target minibatch size.", check=positive)
    seed: int = option(1234, "Seed for splits, base examples, models and batches.",
                       check=seed_value)
    label_learning_rate: float = option(
        1e-3, "Adam's learning rate on the labels (on their logits with "
        "--label_parameterization=softmax); the paper's is 1e-3.", check=positive_number)
    validation_every_epochs: int = option(5, "Validate the labels every this many epochs.",
                                          check=positive)
    reset_window: int | None = option(
        None, "G of docs/method.md section 2c (default: 50/100/200 by the rule).",
        check=optional(positive), item=int)
    jit_compile: bool | str = option(
        "auto", "XLA-compile the meta loop. auto: off on CPUs (measured slower there), on "
        "GPUs whichever a few timed steps of this run's shapes say is faster; config.json "
        "records the choice.", choices=JIT_CHOICES, identity=FREE)
    # Meta steps per compiled call (None: all up to the next validation point). Any
    # value gives the same labels; 1 is the step-at-a-time path the tests compare with.
    steps_per_call: int | None = option(None, "Meta steps per compiled call.",
                                        check=optional(positive), flag=False, identity=FREE)
    distribute: str = option(
        "none", "mirrored: split every outer batch over all visible GPUs "
        "(tf.distribute.MirroredStrategy); same labels within float rounding. multi_worker "
        "is available to the library (distill_labels) only.", choices=DISTRIBUTIONS,
        identity=FREE)
    label_parameterization: str = option(
        "clip", "clip: Adam on the labels, clipped to [0, 1] and renormalised (the "
        "paper's); softmax: the labels are a softmax of learned logits.",
        choices=LABEL_PARAMETERIZATIONS, omitted_at_default=True)
    augment: tuple = option(
        (), "An evaluation recipe (not the paper's): augment every minibatch of base "
        "images, at distillation and in every evaluation, with these of crop (random "
        "translation by up to 1/8 of the side), flip (left-right) and colour (brightness "
        "and contrast). The distilled set records it and experiments.train repeats it.",
        check=lambda name, value: canonical_augment(value), item=str,
        omitted_at_default=True)
    # One model's validation error is noisy enough to keep labels that test worse.
    validation_models: int = option(
        1, "Fresh models whose mean validation error scores each validation point and a "
        "start (1: the paper's one model; more keep worse labels less often, at that many "
        "times the cost).", check=positive, omitted_at_default=True)

    def __post_init__(self):
        check_options(self)
        # The canonical order, so that spelling the same recipe differently is the same run.
        object.__setattr__(self, "augment", canonical_augment(self.augment))
        if self.inner_batch_size > self.num_base_examples:
            raise DistillError(
                f"inner_batch_size={self.inner_batch_size} is larger than "
                f"num_base_examples={self.num_base_examples}: the inner minibatch is drawn "
                f"from the base examples without replacement")
        rule_jit_with_distribute(self.jit_compile, self.distribute)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; `resolved()` fills the defaults that depend on the data
    (config.json records the resolved values)."""

    distill: DistillConfig
    # Data.
    target: str = option("mnist", "Target dataset (whose test accuracy counts): a "
                         "registered name or a path to a Keras-layout npz (or a folder).",
                         check=name_text)
    source: str | None = option(None, "Dataset the base examples come from (default: "
                                "target).", check=optional(name_text), item=str)
    base_selection: str = option("auto", "auto: balanced within a dataset, unbalanced "
                                 "across datasets.", choices=BASE_SELECTIONS)
    emnist_orientation: str = option(
        "as_stored", "EMNIST letters as the models see them: as stored (transposed; what "
        "torchvision gave the paper's runs) or upright.", choices=ORIENTATIONS,
        applies="transposed_data")
    npz_orientation: str = option("as_stored", "How a local emnist_letters.npz holds its "
                                  "images (the official files and TFDS: as stored).",
                                  choices=ORIENTATIONS, applies="transposed_data")
    target_split: str = option(
        "official", "How the target's splits are made: official, or from_test for a target "
        "whose data hold only the test split (KMNIST's official test files): a stratified "
        "re-split with a fixed seed into 60 % pool, 10 % validation and 30 % test, recorded "
        "in config.json, results.json and the distilled set.", choices=TARGET_SPLITS,
        omitted_at_default=True)
    data_dir: str | None = option(None, "Folder with <name>.npz files and/or TFDS data.",
                                  check=optional(name_text), item=str, identity=FREE)
    download: bool = option(False, "Let tensorflow-datasets download missing data.",
                            check=boolean, identity=FREE)
    num_validation: int | None = option(None, "Validation examples (default: the "
                                        "protocol's).", check=optional(positive), item=int)
    target_set_size: int | None = option(None, "Use only this many target training "
                                         "examples.", check=optional(positive), item=int)
    whitening: str = option(
        "none", "An evaluation recipe (not the paper's): zca whitens every image the models "
        "see (the splits and the base images), fitted on the target's training split after "
        "normalisation. The distilled set stores the whitening and experiments.train "
        "repeats it.", choices=WHITENINGS, omitted_at_default=True)
    zca_regularization: float = option(
        DEFAULT_ZCA_REGULARIZATION, "With --whitening=zca: added to every eigenvalue of the "
        "images' covariance, relative to their mean (KIP's 0.1).", check=positive_number,
        omitted_at_default=True)
    # Solver.
    algorithm: str = option("second_order", "second_order (docs/method.md section 2a) or "
                            "ridge_regression (section 2b, LD RR).", choices=ALGORITHMS)
    architecture: str = option("auto", "Model architecture; auto: the paper's (LeNet for "
                               "greyscale targets, AlexNet for CIFAR-10/100 and CUB).",
                               check=name_text)
    outer_splits: int = option(2, "Shards of the outer batch run in parallel.",
                               check=positive)
    hypergradient: str = option("forward", "How the second-order hypergradient is computed "
                                "(same value).", choices=HYPERGRADIENT_MODES)
    outer_precision: str = option(
        DEFAULT_OUTER_PRECISION, "Precision of the outer pass. mixed_conv_bfloat16: bf16 "
        "convolutions, ~20% faster steps on CPUs with bf16 but ~0.6 points lower MNIST "
        "accuracy over 3 seeds (RESULTS.md); auto: that on such CPUs, float32 elsewhere.",
        choices=OUTER_PRECISIONS)
    label_init: str = option(
        "uniform", "Labels meta-learning starts from: uniform (the paper's); one_hot (the "
        "base images' classes); teacher (the --baseline=teacher labels, temperature chosen "
        "on validation). A non-uniform start is validated before the first meta step, so "
        "the run never ends with labels worse than it started from.", choices=LABEL_INITS,
        omitted_at_default=True)
    unroll_steps: int = option(1, "K: inner SGD steps (on K inner batches) the "
                               "hypergradient looks through; K > 1 needs "
                               "--hypergradient=reverse.", check=positive,
                               omitted_at_default=True)
    validation_steps: str = option(
        "learner", "The step count each validation point scores the labels at: learner (the "
        "paper's: the learner's steps since its last reset) or search (the labels' own "
        "best, searched as for a baseline and scored with a fresh model).",
        choices=VALIDATION_STEPS, omitted_at_default=True)
    learner_pool: int = option(
        1, "P: learners whose label hypergradients each meta step averages; a reset "
        "replaces the oldest, so they are at different stages of training (1: the paper's "
        "single learner). P > 1 needs --validation_steps=search and costs P times the meta "
        "step.", check=positive, omitted_at_default=True)
    horizon_steps: int = option(
        0, "T: each meta step trains a fresh model from scratch for T steps as an "
        "evaluation model trains (Adam, minibatches of --inner_batch_size) and takes the "
        "outer loss at its end, the hypergradient through all T steps (0: the paper's "
        "one-step look-ahead). Needs --hypergradient=reverse and --validation_steps=search; "
        "costs about 3T evaluation training steps per meta step.", check=non_negative,
        omitted_at_default=True)
    # Baselines.
    baseline: str = option(
        "none", "Run a fixed labelling of the same base examples instead of distilling: "
        "true or smoothed one-hot labels; teacher: the softmax of a model trained on the "
        "target's training split, temperature chosen on validation; uniform; class_mapping "
        "(with --source): each source class mapped to the target class that the validation "
        "split says fits best.", choices=BASELINES)
    label_smoothing: float = option(0.1, "Smoothing of the label_smoothing baseline.",
                                    check=fraction, applies="label_smoothing")
    baseline_max_steps: int | None = option(
        None, "Largest step count the baselines' search tries (default: the protocol's "
        "1000 / 1700).", check=optional(at_least(10)), item=int, applies="step_search")
    teacher_epochs: int = option(10, "Epochs of the teacher's training (--baseline="
                                 "teacher); the epoch of best validation accuracy is kept.",
                                 check=positive, applies="teacher")
    teacher_temperatures: tuple = option(
        (1.0, 2.0, 4.0, 8.0, 16.0), "Softmax temperatures tried for the teacher's labels "
        "(chosen on validation).", check=each(positive_number, at_least_one=True), item=float,
        applies="teacher")
    teacher_epoch_choice: str = option(
        "best_accuracy", "Which of the teacher's epochs labels the base images: the one of "
        "best validation accuracy, or (search) every epoch's labels scored on validation "
        "with the temperature, as a baseline held at its best.",
        choices=TEACHER_EPOCH_CHOICES, omitted_at_default=True, applies="teacher")
    teacher_batch_size: int = option(128, "Minibatch size of the teacher's training.",
                                     check=positive, omitted_at_default=True, applies="teacher")
    # The teacher's own training moves its labels' score by more than a point (its epochs
    # alone: 1.7 on MNIST n = 100), so a baseline's spread needs teachers of other seeds on
    # the same base images.
    teacher_seed: int | None = option(
        None, "Seed of the teacher's initialisation and minibatch order (default: derived "
        "from --seed); with the base images fixed by --seed, other values give the teacher "
        "baseline's spread over teachers.", check=optional(seed_value), item=int,
        omitted_at_default=True, applies="teacher")
    # Evaluation.
    test_repetitions: int = option(20, "Fresh models trained for the test statistics.",
                                   check=positive, identity=FREE)
    eval_architectures: tuple = option(
        (), "Also test the labels with these architectures (architecture transfer), e.g. "
        "alexnet,lenet,resnet.", check=each(name_text, distinct=True), item=str,
        identity=FREE)
    eval_optimizers: tuple = option(
        (), "Also test the labels with model.fit and these optimizers: sgd, sgd_momentum, "
        "adam, rmsprop.", check=each(one_of(OPTIMIZERS), distinct=True), item=str,
        identity=FREE)
    step_offsets: tuple = option(
        (), "Also test with the learned step count shifted by these, e.g. "
        "-50,-20,-10,0,10,20,50,100.", check=each(lambda name, value: None), item=int,
        identity=FREE)
    transfer_repetitions: int | None = option(None, "Models per transfer setting (default: "
                                              "--test_repetitions).",
                                              check=optional(positive), item=int,
                                              identity=FREE)

    def __post_init__(self):
        if not isinstance(self.distill, DistillConfig):
            raise DistillError(f"distill must be a DistillConfig, got {type(self.distill)}")
        for name in ("teacher_temperatures", "eval_architectures", "eval_optimizers",
                     "step_offsets"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "teacher_temperatures",
                           tuple(float(t) for t in self.teacher_temperatures))
        # Every option's own check, then the rules between options (dataclasses.replace
        # constructs anew, so a changed config is checked too).
        check_options(self)
        check_rules(self)

    @property
    def source_or_target(self) -> str:
        return self.source or self.target

    def resolved(self, default_architecture: Callable[[str], str],
                 resolve_outer_precision: Callable[[str], str]) -> "ExperimentConfig":
        """`auto` settings filled in: the base selection by the rule, the architecture and
        outer precision by the callables given (the budget table, the machine)."""
        source = self.source_or_target
        selection = self.base_selection
        if selection == "auto":
            selection = "balanced" if source == self.target else "unbalanced"
        architecture = (default_architecture(self.target) if self.architecture == "auto"
                        else self.architecture)
        return dataclasses.replace(self, source=source, base_selection=selection,
                                   architecture=architecture,
                                   outer_precision=resolve_outer_precision(self.outer_precision))


def check_rules(config: ExperimentConfig):
    """The rules that join several of a run's options (each option's own check has run)."""
    across = config.source_or_target != config.target
    if config.baseline in NEEDS_TARGET_CLASSES and across:
        raise DistillError(f"the {config.baseline} baseline needs base examples from the target "
                           f"dataset (its labels are target classes); drop --source, or use "
                           f"--baseline=class_mapping, uniform or teacher across datasets")
    if config.baseline == "class_mapping" and not across:
        raise DistillError("--baseline=class_mapping maps source classes to target classes: "
                           "it needs --source (another dataset); within a dataset use "
                           "--baseline=true_labels")
    if config.baseline != "none":
        # What only learned labels have, asked of a fixed labelling.
        baseline = f"a baseline (--baseline={config.baseline}) learns nothing"
        for name, asked, why in (
                ("validation_steps", config.validation_steps != "learner",
                 "concerns learned labels; a baseline always searches its step count"),
                ("label_init", config.label_init != "uniform", f"starts meta-learning; {baseline}"),
                ("learner_pool", config.learner_pool > 1, f"learns labels; {baseline}"),
                ("horizon_steps", config.horizon_steps > 0, f"learns labels; {baseline}")):
            if asked:
                raise DistillError(f"--{name}={getattr(config, name)} {why}")
    if config.label_init == "one_hot" and across:
        raise DistillError("--label_init=one_hot needs base examples from the target "
                           "dataset (their classes are target classes); across datasets "
                           "use --label_init=teacher or uniform")
    if config.label_init == "one_hot" and config.distill.label_parameterization == "softmax":
        raise DistillError("--label_init=one_hot with --label_parameterization=softmax "
                           "cannot move: a softmax's gradient vanishes at exact 0 and 1; "
                           "use clip, or start from the teacher")
    rule_unroll_steps(config.unroll_steps, config.hypergradient, config.algorithm)
    rule_horizon(config.horizon_steps, config.algorithm, config.hypergradient,
                 config.unroll_steps, config.learner_pool)
    if (config.learner_pool > 1 or config.horizon_steps) and config.validation_steps != "search":
        # A pool's or a horizon's learner steps say nothing about a fresh model's: the
        # labels' own step count must be searched.
        name = "learner_pool" if config.learner_pool > 1 else "horizon_steps"
        raise DistillError(f"--{name}={getattr(config, name)} needs --validation_steps=search: "
                           f"its learners' step counts are not a fresh model's")
    if config.whitening != "zca" and config.zca_regularization != DEFAULT_ZCA_REGULARIZATION:
        raise DistillError(f"--zca_regularization={config.zca_regularization} is the strength "
                           f"of ZCA whitening: it needs --whitening=zca")


@dataclasses.dataclass(frozen=True)
class RecipeChoice:
    """experiments.distill's --recipe: the named set of settings (RECIPES) that fills the
    flags not given. Not a setting of the run (a library caller sets the options
    themselves): what it sets is, and config.json's recipe_expansion says which."""

    recipe: str = option(
        "paper", "A named set of settings, expanded before the run starts; each flag given "
        "wins over its recipe's value, and config.json records both. paper: the paper's "
        "protocol (the defaults); horizon: the whole-run horizon from the teacher's labels "
        "(measured on LeNet: MNIST n = 100 93.36 against the paper recipe's 86.61, in about "
        "10 minutes on 2 cores; its memory grows with T and the model, so larger "
        "architectures need far more).", choices=RECIPE_NAMES)

    def __post_init__(self):
        check_options(self)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How `experiments.train` trains models on a distilled set; None means "the set's own
    recipe" (`evaluation.train_distilled.resolve_train_settings` fills them in)."""

    architecture: str | None = option(None, "Model architecture (default: the set's).",
                                      check=optional(name_text), item=str)
    optimizer: str | None = option(None, "Keras optimizer (default: the set's recipe, Adam).",
                                   choices=OPTIMIZERS, check=optional(one_of(OPTIMIZERS)))
    learning_rate: float | None = option(
        None, "Learning rate (default: the recipe's for its own optimizer, else the "
        "optimizer's usual: SGD 0.01, Adam/RMSprop 1e-3).", check=optional(positive_number),
        item=float)
    steps: int | None = option(None, "Training steps (default: the set's num_train_steps).",
                               check=optional(positive), item=int)
    batch_size: int | None = option(None, "Minibatch size (default: the set's inner batch "
                                    "size).", check=optional(positive), item=int)
    repetitions: int = option(20, "Fresh models to train and test.", check=positive)
    seed: int | None = option(None, "Seed of the model inits and batch orders (default: the "
                              "run's seed, so model i starts as the run's test model i).",
                              check=optional(seed_value), item=int)
    model_kind: str = option("auto", "auto: the set's kind (ridge-regression sets use the RR "
                             "recipe).", choices=MODEL_KINDS)
    augment: tuple | None = option(
        None, "Augmentation of every minibatch: crop, flip, colour (default: the set's "
        "recipe's, which is none for the paper's; --augment= for none).",
        check=optional(lambda name, value: canonical_augment(value)), item=str)

    def __post_init__(self):
        if self.augment is not None:
            object.__setattr__(self, "augment", canonical_augment(self.augment))
        check_options(self)


def to_json_dict(config) -> dict:
    return dataclasses.asdict(config)


def json_value(value):
    """A setting as config.json holds it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def identity_settings(config: DistillConfig) -> dict:
    """The loop's settings that make its labels what they are: every option but the
    free and extensible ones, and those omitted at their default."""
    settings = {}
    for field, info in options_of(type(config)):
        value = getattr(config, field.name)
        if info.identity != IDENTITY or (info.omitted_at_default and value == field.default):
            continue
        settings[field.name] = json_value(value)
    return settings


@dataclasses.dataclass(frozen=True)
class IdentityRules:
    """What distill/identity.py needs to know of every setting, by dotted name
    ("distill.epochs"): its default, and whether it is free, extensible or omitted at
    its default."""

    names: frozenset
    defaults: dict
    applies: dict                    # {name: the part of a run that reads it}
    free: frozenset
    extensible: frozenset
    omitted_at_default: dict


def identity_rules() -> IdentityRules:
    names, defaults, free, extensible, omitted, applies = set(), {}, set(), set(), {}, {}
    for config_class, prefix in ((ExperimentConfig, ""), (DistillConfig, "distill.")):
        for field, info in options_of(config_class):
            name = prefix + field.name
            names.add(name)
            if field.default is not dataclasses.MISSING:
                defaults[name] = json_value(field.default)
            if info.identity == FREE:
                free.add(name)
            elif info.identity == EXTENSIBLE:
                extensible.add(name)
            if info.omitted_at_default:
                omitted[name] = json_value(field.default)
            if info.applies is not None:
                applies[name] = info.applies
    return IdentityRules(frozenset(names), defaults, applies, frozenset(free),
                         frozenset(extensible), omitted)
