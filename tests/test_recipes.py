"""Recipes by name (--recipe): expanded into the flags before anything runs, each flag
given winning, recorded in config.json."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from absl import flags

from experiments.flags import apply_recipe, config_from_flags, define_config_flags
from kerasdistill.budget import resolve_budget
from kerasdistill.config import RECIPES, DistillConfig, ExperimentConfig, RecipeChoice, options_of
from tests.conftest import REPO_ROOT, run_cli

# What a recipe may set: the run's options that have a flag.
OPTION_NAMES = {field.name for config_class in (DistillConfig, ExperimentConfig)
                for field, info in options_of(config_class) if info.flag}


def _flag_values(argv):
    values = flags.FlagValues()
    define_config_flags(flag_values=values)
    define_config_flags((RecipeChoice,), flag_values=values)
    values(["prog", *argv])
    return values


def _command_config(argv):
    """What experiments.distill makes of `argv`: the recipe, then the budget table."""
    values = _flag_values(argv)
    record = apply_recipe(values)
    budget, _ = resolve_budget(values["target"].value, values["num_base_examples"].value,
                               values["architecture"].value, values["inner_batch_size"].value,
                               values["epochs"].value)
    return config_from_flags(values, architecture=budget.architecture,
                             inner_batch_size=budget.inner_batch_size,
                             epochs=budget.epochs), record


def test_every_recipe_sets_options_that_exist():
    assert RECIPES["paper"] == {}
    for name, settings in RECIPES.items():
        assert set(settings) <= OPTION_NAMES, name


def test_the_paper_recipe_is_the_default_and_changes_nothing():
    config, record = _command_config(["--target=mnist"])
    assert record == {"name": "paper", "settings": {}, "overridden": {}}
    assert config.distill.epochs == 400 and config.horizon_steps == 0


def test_the_horizon_recipe_expands_and_a_flag_given_wins():
    config, record = _command_config(["--recipe=horizon", "--epochs=6"])
    assert config.horizon_steps == 200 and config.label_init == "teacher"
    assert config.distill.label_parameterization == "softmax"
    assert config.distill.label_learning_rate == 0.01 and config.teacher_epochs == 2
    assert config.distill.epochs == 6                      # given: wins over the recipe's 2
    assert record["overridden"] == {"epochs": 6}
    assert record["settings"] == {key: value for key, value in RECIPES["horizon"].items()
                                  if key != "epochs"}


def test_a_recipes_choices_are_set_as_their_flags_spell_them(monkeypatch):
    """A recipe holds values (jit_compile's True); the flag holds text ("true"); a value that
    is no choice is one error, not a KeyError."""
    from kerasdistill.errors import DistillError
    monkeypatch.setitem(RECIPES, "horizon", {**RECIPES["horizon"], "jit_compile": True})
    config, record = _command_config(["--recipe=horizon"])
    assert config.distill.jit_compile is True and record["settings"]["jit_compile"] is True
    monkeypatch.setitem(RECIPES, "horizon", {**RECIPES["horizon"], "label_init": "teachr"})
    with pytest.raises(DistillError, match="--label_init must be one of uniform, one_hot, "
                                           "teacher, got 'teachr'"):
        _command_config(["--recipe=horizon"])


def test_a_flag_that_contradicts_the_recipe_is_refused_by_its_rule():
    from kerasdistill.errors import DistillError
    with pytest.raises(DistillError, match="needs --validation_steps=search"):
        _command_config(["--recipe=horizon", "--validation_steps=learner"])


def test_the_horizon_recipe_is_the_run_that_won_mnist_n100():
    """`--recipe=horizon` on MNIST n = 100 is the same run, by its identity, as the
    committed seed-1234 run of issue 13's winning column (93.30 % over 20 models)."""
    from kerasdistill.distill.identity import run_identity
    from kerasdistill.experiment import resolve
    run = os.path.join(REPO_ROOT, "results", "beyond_cpu",
                       "mnist_n100_lenet_ld_teacher_softmax_horizon200_s1234")
    with open(os.path.join(run, "config.json")) as f:
        committed = json.load(f)
    config, _ = _command_config(["--recipe=horizon", "--target=mnist",
                                 "--num_base_examples=100"])
    assert run_identity(dataclasses.asdict(resolve(config))) == committed["run_identity"]


def test_config_json_records_the_recipe_asked_and_what_it_set(fake_data_dir, tmp_path):
    result = run_cli("experiments.distill", "--recipe=horizon", "--num_base_examples=10",
                     "--inner_batch_size=5", "--outer_batch_size=64", "--horizon_steps=3",
                     "--teacher_epochs=1", "--test_repetitions=1", "--baseline_max_steps=20",
                     "--num_validation=100",
                     f"--data_dir={fake_data_dir}", f"--model_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Recipe horizon: --label_init=teacher" in result.stderr
    with open(tmp_path / "run" / "config.json") as f:
        config = json.load(f)
    assert config["recipe_expansion"]["name"] == "horizon" and config["horizon_steps"] == 3
    assert config["recipe_expansion"]["overridden"] == {"horizon_steps": 3,
                                                        "teacher_epochs": 1}
    assert config["recipe_expansion"]["settings"]["label_init"] == "teacher"
    assert config["distill"]["epochs"] == 2 and config["label_init"] == "teacher"


def test_the_commands_doc_spells_the_horizon_recipe_as_the_config_defines_it():
    import re
    with open(os.path.join(REPO_ROOT, "docs", "commands.md")) as f:
        doc = f.read()
    spelled = re.search(r"`horizon` the whole-run horizon from the teacher's labels \(`([^`]*)`\)",
                        doc).group(1)
    written = dict(item.removeprefix("--").split("=") for item in spelled.split())
    assert written == {name: str(value) for name, value in RECIPES["horizon"].items()}
