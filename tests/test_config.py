"""One place per option: kerasdistill/config.py defines each option once, and its flags,
checks and identity rules come from that definition."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import pytest
from absl import flags

from experiments.flags import config_from_flags, config_values, define_config_flags
from kerasdistill.config import (DistillConfig, ExperimentConfig, RecipeChoice, TrainSettings,
                                 identity_rules, identity_settings, option, options_of, positive)
from kerasdistill.errors import DistillError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = (DistillConfig, ExperimentConfig, TrainSettings, RecipeChoice)


def _distill(**changes):
    return DistillConfig(**{"num_base_examples": 10, "inner_batch_size": 5, **changes})


def test_every_option_has_help_and_a_check():
    for config_class in CONFIGS:
        for field, info in options_of(config_class):
            assert info.help, f"{config_class.__name__}.{field.name} has no help"
            assert info.check is not None, f"{config_class.__name__}.{field.name} is unchecked"
    # Every field but ExperimentConfig.distill (a config itself) is an option.
    assert {f.name for f in dataclasses.fields(ExperimentConfig)} - {
        f.name for f, _ in options_of(ExperimentConfig)} == {"distill"}
    assert len(options_of(DistillConfig)) == len(dataclasses.fields(DistillConfig))


@pytest.mark.parametrize("changes, message", [
    ({"seed": -3}, "seed must be a whole number in [0, 2^31), got -3"),
    ({"seed": 2 ** 31}, "seed must be a whole number in [0, 2^31)"),
    ({"label_learning_rate": math.nan}, "label_learning_rate must be a finite number > 0, got nan"),
    ({"label_learning_rate": math.inf}, "label_learning_rate must be a finite number > 0"),
    ({"label_learning_rate": 0.0}, "label_learning_rate must be a finite number > 0"),
    ({"epochs": 0}, "epochs must be a whole number >= 1, got 0"),
    ({"validation_models": True}, "validation_models must be a whole number >= 1, got True"),
    ({"reset_window": -1}, "reset_window must be a whole number >= 1, got -1"),
    ({"label_parameterization": "tanh"}, "label_parameterization must be one of"),
    ({"jit_compile": "yes"}, "jit_compile must be one of"),
    ({"augment": ("crop", "crop")}, "augment must be distinct names"),
    ({"inner_batch_size": 11}, "inner_batch_size=11 is larger than num_base_examples=10"),
    ({"jit_compile": True, "distribute": "mirrored"}, "jit_compile=True with distribute"),
])
def test_a_bad_distill_value_is_refused_on_construction(changes, message):
    with pytest.raises(DistillError, match=None) as error:
        _distill(**changes)
    assert message in str(error.value)


@pytest.mark.parametrize("changes, message", [
    ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1), got 1.0"),
    ({"test_repetitions": 0}, "test_repetitions must be a whole number >= 1, got 0"),
    ({"teacher_temperatures": (1.0, -2.0)}, "teacher_temperatures must be a finite number > 0"),
    ({"eval_optimizers": ("adam", "lbfgs")}, "eval_optimizers must be one of"),
    ({"eval_architectures": ("lenet", "lenet")}, "eval_architectures must not repeat"),
    ({"baseline_max_steps": 5}, "baseline_max_steps must be a whole number >= 10, got 5"),
    ({"zca_regularization": math.nan}, "zca_regularization must be a finite number > 0"),
    ({"target": ""}, "target must be a non-empty name"),
    ({"horizon_steps": 200}, "--horizon_steps=200 needs --hypergradient=reverse"),
    ({"unroll_steps": 2, "algorithm": "ridge_regression"},
     "unroll_steps=2 is for --algorithm=second_order"),
    ({"baseline": "class_mapping"}, "--baseline=class_mapping maps source classes"),
    ({"baseline": "teacher", "label_init": "teacher"}, "--label_init=teacher starts meta-learning"),
    ({"learner_pool": 2}, "--learner_pool=2 needs --validation_steps=search"),
    ({"zca_regularization": 0.5}, "--zca_regularization=0.5 is the strength of ZCA whitening"),
])
def test_a_bad_run_value_or_combination_is_refused_on_construction(changes, message):
    with pytest.raises(DistillError) as error:
        ExperimentConfig(distill=_distill(), **changes)
    assert message in str(error.value)


def test_every_flag_has_its_line_in_the_commands_doc():
    with open(os.path.join(REPO_ROOT, "docs", "commands.md")) as f:
        doc = f.read()
    missing = [field.name for config_class in CONFIGS for field, info in options_of(config_class)
               if info.flag and f"--{field.name}" not in doc]
    assert missing == []


def test_identity_rules_come_from_the_definitions():
    rules = identity_rules()
    assert rules.free == {"data_dir", "download", "test_repetitions",
                          "eval_architectures", "eval_optimizers", "step_offsets",
                          "transfer_repetitions", "distill.jit_compile", "distill.steps_per_call",
                          "distill.distribute"}
    assert rules.extensible == {"distill.epochs"}
    # What earlier runs recorded before these settings existed, pinned: a change here
    # would make committed runs look like other runs.
    assert rules.omitted_at_default == {
        "label_init": "uniform", "unroll_steps": 1, "distill.label_parameterization": "clip",
        "validation_steps": "learner", "learner_pool": 1, "distill.augment": [],
        "distill.validation_models": 1, "horizon_steps": 0, "whitening": "none",
        "zca_regularization": 0.1, "target_split": "official",
        "teacher_epoch_choice": "best_accuracy", "teacher_batch_size": 128,
        "teacher_seed": None}
    assert {"distill.num_base_examples", "distill.inner_batch_size", "target"} <= rules.names


def test_every_applies_names_a_part_of_a_run():
    from kerasdistill.data.registry import get_dataset_spec
    from kerasdistill.distill.identity import _uses
    parts = set(_uses({"target": "mnist"}, get_dataset_spec))
    assert set(identity_rules().applies.values()) == parts
    assert identity_rules().applies["teacher_epochs"] == "teacher"


def test_the_loops_identity_leaves_out_free_extensible_and_defaulted_settings():
    settings = identity_settings(_distill(epochs=7, jit_compile=False, augment=("flip",)))
    assert settings == {"num_base_examples": 10, "inner_batch_size": 5, "outer_batch_size": 1024,
                        "seed": 1234, "label_learning_rate": 1e-3, "validation_every_epochs": 5,
                        "reset_window": None, "augment": ["flip"]}


def _flag_values(classes=(DistillConfig, ExperimentConfig), argv=()):
    values = flags.FlagValues()
    define_config_flags(classes, flag_values=values)
    values(["prog", *argv])
    return values


def test_each_option_is_a_flag_with_its_default_and_choices():
    values = _flag_values()
    for config_class in (DistillConfig, ExperimentConfig):
        for field, info in options_of(config_class):
            if not info.flag:
                assert field.name not in values
                continue
            flag = values[field.name]
            assert flag.help.endswith(info.help)  # enums put their choices first
            if info.choices is not None:  # as text: jit_compile's True is "true"
                assert tuple(flag.parser.enum_values) == tuple(
                    str(choice).lower() if isinstance(choice, bool) else choice
                    for choice in info.choices)
    assert values["num_base_examples"].default == 100     # the flag's own default
    assert values["epochs"].default is None                # the budget table fills it
    assert values["teacher_temperatures"].default == ["1.0", "2.0", "4.0", "8.0", "16.0"]


def test_flags_read_back_into_the_config_they_describe():
    values = _flag_values(argv=["--seed=7", "--augment=flip,crop", "--jit_compile=false",
                                "--step_offsets=-5,5", "--teacher_temperatures=2,4",
                                "--target=fashion_mnist"])
    config = config_from_flags(values, inner_batch_size=50, epochs=3)
    assert config.distill.seed == 7 and config.distill.epochs == 3
    assert config.distill.augment == ("crop", "flip") and config.distill.jit_compile is False
    for text, value in (("true", True), ("auto", "auto")):
        assert config_from_flags(_flag_values(argv=[f"--jit_compile={text}"]),
                                 inner_batch_size=50, epochs=3).distill.jit_compile == value
    assert config.step_offsets == (-5, 5) and config.teacher_temperatures == (2.0, 4.0)
    assert config.target == "fashion_mnist"
    with pytest.raises(DistillError, match="--step_offsets takes whole numbers, got 1,x"):
        config_from_flags(_flag_values(argv=["--step_offsets=1,x"]), inner_batch_size=50)
    train = TrainSettings(**config_values(TrainSettings, _flag_values(
        (TrainSettings,), ["--augment=", "--steps=9"])))
    assert train.augment == () and train.steps == 9 and train.optimizer is None


def test_the_teachers_batch_size_reaches_its_training_and_its_runs_identity():
    """The option added as one definition: flag, check, identity and use."""
    from kerasdistill.distill.identity import run_identity
    from kerasdistill.experiment import resolve, teacher_budget
    values = _flag_values(argv=["--teacher_batch_size=64", "--baseline=teacher"])
    config = config_from_flags(values, inner_batch_size=50, epochs=3)
    assert teacher_budget(config).batch_size == 64
    with pytest.raises(DistillError, match="teacher_batch_size must be a whole number >= 1"):
        ExperimentConfig(distill=_distill(), teacher_batch_size=0)
    assert run_identity(dataclasses.asdict(resolve(config)))["teacher_batch_size"] == 64
    # At its default, or where no teacher is trained, it leaves identities as they were.
    for changes in ({"baseline": "teacher"}, {"teacher_batch_size": 64}):
        assert "teacher_batch_size" not in run_identity(dataclasses.asdict(resolve(
            ExperimentConfig(distill=_distill(), **changes))))


def test_a_new_option_is_one_definition():
    """What adding an option takes: one field. Its flag, check and identity follow."""
    @dataclasses.dataclass(frozen=True)
    class Toy:
        widths: tuple = option((8, 16), "Layer widths.", check=lambda n, v: [
            positive(n, w) for w in v], item=int)
        mode: str = option("fast", "How.", choices=("fast", "exact"))

    values = _flag_values((Toy,), ["--widths=4,5", "--mode=exact"])
    assert Toy(**config_values(Toy, values)) == Toy(widths=(4, 5), mode="exact")
    with pytest.raises(flags.IllegalFlagValueError):
        _flag_values((Toy,), ["--mode=slow"])


@pytest.mark.parametrize("argv, message", [
    (["--seed=-3"], "error: seed must be a whole number in [0, 2^31), got -3"),
    (["--label_learning_rate=nan"], "error: label_learning_rate must be a finite number > 0, "
                                    "got nan"),
])
def test_the_command_refuses_bad_values_with_one_line(tmp_path, argv, message):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.distill", "--data_dir=/nonexistent",
         f"--model_dir={tmp_path / 'run'}", *argv],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
