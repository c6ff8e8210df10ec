"""`experiments.train` and `experiments.export` on the command line, and the package install."""

import json
import os
import shutil

import numpy as np
import pytest

from kerasdistill.config import TrainSettings
from kerasdistill.errors import DistillError
from kerasdistill.evaluation.train_distilled import resolve_train_settings
from kerasdistill.export.distilled_set import load_distilled
from tests.conftest import assert_one_error, make_finished_runs, run_cli


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Tiny finished runs: a true-label baseline (ordinary models) and an LD RR run."""
    root = tmp_path_factory.mktemp("train_cli")
    data_dir, runs = make_finished_runs(
        root, {"true": {"baseline": "true_labels"}, "rr": {"algorithm": "ridge_regression"}},
        num_base_examples=20, inner_batch_size=10, epochs=2, seed=5, test_repetitions=3)
    return data_dir, runs, root


def test_train_cli_with_the_sets_defaults(sets):
    data_dir, runs, root = sets
    model_dir, run = runs["true"]
    output = root / "trained" / "results.json"
    result = run_cli("experiments.train", f"--distilled={model_dir}/distilled_set",
                  f"--data_dir={data_dir}", "--repetitions=3", f"--output_json={output}",
                  f"--tensorboard_dir={root / 'trained' / 'tensorboard'}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert len(results["test_accuracies"]) == 3
    assert results["test_accuracy_mean"] == pytest.approx(np.mean(results["test_accuracies"]))
    assert results["test_accuracy_std"] == pytest.approx(np.std(results["test_accuracies"]))
    assert results["test_accuracy_mean"] > 0.6  # true labels of the easy fake classes
    settings = results["settings"]
    assert settings == {"architecture": "lenet", "optimizer": "adam", "learning_rate": 0.001,
                        "steps": run["num_train_steps"], "batch_size": 10, "repetitions": 3,
                        "seed": 5, "model_kind": "ordinary", "augment": []}
    config = json.loads((output.parent / "config.json").read_text())
    assert config["steps"] == run["num_train_steps"] and config["command"] == "experiments.train"
    assert sorted(os.listdir(root / "trained" / "tensorboard")) == [
        "model_00", "model_01", "model_02"]
    assert "test accuracy" in result.stdout


def test_train_settings_resolve_per_optimizer(sets):
    distilled = load_distilled(os.path.join(sets[1]["true"][0], "distilled_set"))
    def learning_rate(**settings):
        return resolve_train_settings(TrainSettings(**settings), distilled).learning_rate
    assert learning_rate(optimizer="sgd") == 0.01
    assert learning_rate(optimizer="rmsprop") == 1e-3
    assert learning_rate(optimizer="sgd", learning_rate=0.5) == 0.5
    resolved = resolve_train_settings(TrainSettings(steps=7, batch_size=4, seed=9), distilled)
    assert (resolved.steps, resolved.batch_size, resolved.seed) == (7, 4, 9)


def test_ridge_regression_sets_train_with_the_rr_recipe(sets):
    """Model i of the RR recipe starts as the run's test model i: the same accuracies."""
    data_dir, runs, root = sets
    model_dir, run = runs["rr"]
    output = root / "rr_trained.json"
    result = run_cli("experiments.train", f"--distilled={model_dir}/distilled_set",
                  f"--data_dir={data_dir}", "--repetitions=3", f"--output_json={output}",
                  "--verbose=false")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["settings"]["model_kind"] == "ridge_regression"
    np.testing.assert_allclose(results["test_accuracies"], run["test_accuracies"], atol=1e-6)
    refused = run_cli("experiments.train", f"--distilled={model_dir}/distilled_set",
                   f"--data_dir={data_dir}", "--optimizer=sgd")
    assert_one_error(refused, "learned for ridge-regression models")


@pytest.mark.parametrize("args,message", [
    ([], "--distilled is required"),
    (["--distilled=/nonexistent/set"], "is not a folder"),
    (["--distilled={set}", "--batch_size=21"], "batch_size must be in 1..20"),
    (["--distilled={set}", "--steps=0"], "steps must be a whole number >= 1, got 0"),
    (["--distilled={set}", "--repetitions=0"], "repetitions must be a whole number >= 1, got 0"),
    (["--distilled={set}", "--learning_rate=-1"],
     "learning_rate must be a finite number > 0, got -1.0"),
    (["--distilled={set}", "--architecture=vgg"], "unknown architecture 'vgg'"),
    (["--distilled={set}", "--data_dir={empty}"], "mnist.npz was not found"),
    (["--distilled={set}", "--output_json={file}/out.json"], "is a file, not a folder"),
    (["--distilled={set}", "--output_json={empty}"], "is a folder; name a file"),
    (["--distilled={set}", "--output_json={run}/results.json"], "another kind of run"),
])
def test_train_cli_bad_input(sets, tmp_path, args, message):
    data_dir, runs, _ = sets
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    names = {"set": f"{runs['true'][0]}/distilled_set", "empty": tmp_path / "empty",
             "file": tmp_path / "a_file", "run": runs["true"][0]}
    args = [a.format(**names) for a in args]
    if not any(a.startswith("--data_dir") for a in args):
        args.append(f"--data_dir={data_dir}")
    assert_one_error(run_cli("experiments.train", *args), message)


def test_export_cli(sets, tmp_path):
    data_dir, runs, _ = sets
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.json", "results.json"):
        shutil.copy(os.path.join(runs["true"][0], name), old / name)
    result = run_cli("experiments.export", f"--model_dir={old}", f"--data_dir={data_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("distilled_set")
    assert load_distilled(str(old / "distilled_set")).num_train_steps == \
        runs["true"][1]["num_train_steps"]
    assert len(os.listdir(old / "plots")) == 4
    assert_one_error(run_cli("experiments.export"), "give one of --model_dir")
    assert_one_error(run_cli("experiments.export", f"--model_dir={tmp_path / 'nothing'}"),
                      "is not a finished run")


def test_train_settings_refuse_unknown_model_kind(sets):
    distilled = load_distilled(os.path.join(sets[1]["true"][0], "distilled_set"))
    with pytest.raises(DistillError, match="model_kind"):
        resolve_train_settings(TrainSettings(model_kind="teacher"), distilled)
