"""The paper's budget table (docs/method.md section 3) as the defaults of every entry point."""

import json

import pytest

from kerasdistill.budget import protocol_budget, resolve_budget
from tests.conftest import run_cli, write_fake_npz

# docs/method.md section 3, written out independently of kerasdistill/budget.py:
# (target, n) -> (architecture, n_i, epochs)
SPEC_TABLE = {
    **{("mnist", n): ("lenet", i, 400 if n <= 100 else 800)
       for n, i in ((10, 10), (20, 10), (50, 25), (100, 50), (200, 50), (500, 50))},
    **{("cifar10", n): ("alexnet", i, 400 if n <= 100 else 800)
       for n, i in ((10, 10), (20, 10), (50, 25), (100, 50), (200, 50), (500, 50))},
    **{("kmnist", n): ("lenet", i, 400 if n <= 100 else 800)
       for n, i in ((10, 10), (20, 10), (50, 25), (100, 50), (200, 50), (500, 50))},
    **{("kuzushiji49", n): ("lenet", i, 100 if n <= 100 else 200)
       for n, i in ((10, 10), (20, 10), (50, 25), (100, 50), (200, 50), (500, 50))},
    ("cifar100", 100): ("alexnet", 100, 800),
    ("fashion_mnist", 100): ("lenet", 50, 400),
}


@pytest.mark.parametrize("target,n", sorted(SPEC_TABLE))
def test_defaults_equal_the_papers_budget_table(target, n):
    budget = protocol_budget(target, n)
    assert (budget.architecture, budget.inner_batch_size, budget.epochs) == SPEC_TABLE[target, n]


def test_explicit_settings_win_and_the_filled_ones_are_named():
    budget, filled = resolve_budget("cifar10", 500, "resnet", None, 30)
    assert (budget.architecture, budget.inner_batch_size, budget.epochs) == ("resnet", 50, 30)
    assert filled == {"inner_batch_size": None}
    # n outside the table: half the set, at least 10, at most 50 above n = 100.
    assert protocol_budget("mnist", 30).inner_batch_size == 15
    assert protocol_budget("mnist", 5).inner_batch_size == 5
    assert protocol_budget("mnist", 1000).inner_batch_size == 50


@pytest.mark.parametrize("args,line", [
    (["--target=cifar10"], "architecture alexnet, inner batch 50, 400 epochs"),
    (["--num_base_examples=500"], "architecture lenet, inner batch 50, 800 epochs"),
    (["--target=cifar100"], "architecture alexnet, inner batch 100, 800 epochs"),
])
def test_the_cli_prints_the_resolved_budget_first(tmp_path, args, line):
    # No data in --data_dir: the run stops at loading, after printing its budget.
    result = run_cli("experiments.distill", *args, f"--data_dir={tmp_path}",
                     f"--model_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    budget_lines = [text for text in result.stderr.splitlines() if text.startswith("Budget: ")]
    assert budget_lines and line in budget_lines[0], result.stderr[-2000:]


def test_config_json_records_the_resolved_budget_beside_what_was_asked(tmp_path):
    write_fake_npz(str(tmp_path / "mnist.npz"))
    result = run_cli("experiments.distill", "--num_base_examples=20", "--epochs=1",
                     "--outer_batch_size=64", "--validation_every_epochs=1",
                     "--num_validation=100", "--test_repetitions=1",
                     f"--data_dir={tmp_path}", f"--model_dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["architecture"] == "lenet" and config["distill"]["inner_batch_size"] == 10
    assert config["requested"]["architecture"] == "auto"
    assert config["requested"]["distill.inner_batch_size"] is None
    assert "distill.epochs" not in config["requested"]  # given on the command line
    assert config["outer_precision"] == "float32"
