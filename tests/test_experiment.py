"""End to end on tiny fake data: results files, determinism, resume, baselines."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill import loop
from kerasdistill.distill.loop import DistillConfig
from kerasdistill.errors import DistillError
from kerasdistill.experiment import ExperimentConfig, run_experiment


def _config(data_dir, **changes):
    distill = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=3,
                            outer_batch_size=64, seed=7, validation_every_epochs=1,
                            reset_window=3)
    config = ExperimentConfig(distill=distill, target="mnist", test_repetitions=3,
                              data_dir=data_dir, num_validation=100, outer_precision="float32")
    return dataclasses.replace(config, **changes)


def _run(config, model_dir):
    return run_experiment(config, str(model_dir), verbose=False)


def test_tiny_run_writes_valid_results(fake_data_dir, tmp_path):
    results = _run(_config(fake_data_dir), tmp_path / "run")
    with open(tmp_path / "run" / "results.json") as f:
        on_disk = json.load(f)
    with open(tmp_path / "run" / "config.json") as f:
        config = json.load(f)
    assert on_disk == json.loads(json.dumps(results))
    assert config["target"] == "mnist" and config["source"] == "mnist"
    assert config["base_selection"] == "balanced" and config["distill"]["epochs"] == 3
    labels = np.asarray(results["labels"])
    assert labels.shape == (10, 10)
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-5)
    assert labels.min() >= 0 and not np.allclose(labels, 0.1)  # learned, not uniform
    assert len(results["test_accuracies"]) == 3
    assert all(0.0 <= a <= 1.0 for a in results["test_accuracies"])
    assert results["test_accuracy_mean"] == pytest.approx(np.mean(results["test_accuracies"]))
    assert results["test_accuracy_std"] == pytest.approx(np.std(results["test_accuracies"]))
    assert results["num_train_steps"] >= 1
    assert len(results["base_indices"]) == 10 and len(set(results["base_indices"])) == 10
    # base_indices point into the official train split: their labels are balanced.
    raw = np.load(os.path.join(fake_data_dir, "mnist.npz"))
    assert sorted(raw["y_train"][results["base_indices"]].tolist()) == list(range(10))
    assert [p["epoch"] for p in results["validation_curve"]] == [1, 2, 3]
    assert set(results["wall_times"]) >= {"meta_train_seconds", "validation_seconds",
                                          "test_seconds", "total_seconds"}
    assert os.listdir(tmp_path / "run" / "tensorboard")
    # The device and what "auto" became on it (a CPU here: XLA off by the rule).
    assert config["distill"]["jit_compile"] == "auto"
    gpus = tf.config.list_physical_devices("GPU")
    jit = config["resolved"]["jit_compile"]
    if gpus:
        assert jit["how"] == "auto: measured here" and set(jit["ms_per_meta_step"]) == {
            "true", "false"}
    else:
        assert jit == {"jit_compile": False,
                       "how": "auto: off on CPUs (XLA measured slower, BENCHMARKS.md)"}
    assert config["resolved"]["evaluation_models_per_call"] == 20  # LeNet stacks
    assert config["resolved"]["outer_precision"] == "float32"
    assert len(config["device"]["gpus"]) == len(gpus) and config["device"]["cpu_model"]
    assert results["resolved"] == config["resolved"]


def test_same_seed_same_results(fake_data_dir, tmp_path):
    first = _run(_config(fake_data_dir), tmp_path / "a")
    second = _run(_config(fake_data_dir), tmp_path / "b")
    assert first["labels"] == second["labels"]
    assert first["test_accuracies"] == second["test_accuracies"]
    other = _run(_config(fake_data_dir, distill=dataclasses.replace(
        _config(fake_data_dir).distill, seed=8)), tmp_path / "c")
    assert other["labels"] != first["labels"]


def test_interrupted_run_resumes_to_the_same_result(fake_data_dir, tmp_path, monkeypatch):
    # Validation (and a checkpoint) every 2 epochs of 10 steps, 4 steps per compiled call:
    # the interruption comes in the second interval after one of its calls has run.
    config = _config(fake_data_dir, distill=dataclasses.replace(
        _config(fake_data_dir).distill, epochs=4, validation_every_epochs=2, steps_per_call=4))
    uninterrupted = _run(config, tmp_path / "whole")

    real_stack = loop._FreshLearners.stack
    calls = []

    def crash_in_the_seventh_call(self, resets_so_far, count):
        calls.append(resets_so_far)
        if len(calls) == 7:  # calls 1-5: epochs 1-2; 6-7: epoch 3
            raise KeyboardInterrupt("simulated interruption")
        return real_stack(self, resets_so_far, count)

    monkeypatch.setattr(loop._FreshLearners, "stack", crash_in_the_seventh_call)
    with pytest.raises(KeyboardInterrupt):
        _run(config, tmp_path / "broken")
    monkeypatch.setattr(loop._FreshLearners, "stack", real_stack)
    from kerasdistill.distill.checkpoint import peek_progress
    first_session = peek_progress(str(tmp_path / "broken" / "checkpoint"))
    resumed = _run(config, tmp_path / "broken")
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["labels"] == uninterrupted["labels"]
    assert resumed["validation_curve"] == uninterrupted["validation_curve"]
    assert resumed["test_accuracies"] == uninterrupted["test_accuracies"]
    # The resumed run's total counts the first session's checkpointed seconds too.
    whole, parts = uninterrupted["wall_times"], resumed["wall_times"]
    assert whole["total_seconds"] == whole["session_seconds"]
    np.testing.assert_allclose(  # exactly the checkpointed seconds, added once
        parts["total_seconds"] - parts["session_seconds"],
        first_session["meta_seconds"] + first_session["validation_seconds"], rtol=1e-9)
    assert first_session["meta_seconds"] > 0
    assert "earlier_sessions_seconds" not in parts


def test_checkpoint_of_other_settings_is_refused(fake_data_dir, tmp_path):
    _run(_config(fake_data_dir), tmp_path / "run")
    changed = _config(fake_data_dir, distill=dataclasses.replace(
        _config(fake_data_dir).distill, inner_batch_size=10))
    with pytest.raises(DistillError, match="other settings"):
        _run(changed, tmp_path / "run")


@pytest.mark.parametrize("baseline", ["true_labels", "label_smoothing"])
def test_baselines_use_true_labels_and_a_validated_step_count(fake_data_dir, tmp_path, baseline):
    results = _run(_config(fake_data_dir, baseline=baseline), tmp_path / baseline)
    labels = np.asarray(results["labels"])
    true_classes = np.asarray(results["base_source_labels"])
    np.testing.assert_array_equal(labels.argmax(1), true_classes)
    expected_top = 1.0 if baseline == "true_labels" else 0.9 + 0.1 / 10
    np.testing.assert_allclose(labels.max(1), expected_top, rtol=1e-6)
    assert results["num_train_steps"] in [p["steps"] for p in results["validation_curve"]]
    assert results["validation_curve"][0]["steps"] == 10
    assert results["validation_curve"][-1]["steps"] == 1000
    # The fake classes are easy: true labels must train a good model.
    assert results["test_accuracy_mean"] > 0.6


def test_cross_dataset_uses_unbalanced_source_examples(fake_data_dir, tmp_path):
    results = _run(_config(fake_data_dir, source="fashion_mnist"), tmp_path / "cross")
    config = json.load(open(tmp_path / "cross" / "config.json"))
    assert config["base_selection"] == "unbalanced" and config["source"] == "fashion_mnist"
    assert results["source_origin"] == "fashion_mnist.npz"  # the file, as target_origin
    assert np.asarray(results["labels"]).shape == (10, 10)


@pytest.mark.parametrize("baseline", ["none", "true_labels"])
def test_ridge_regression_runs_end_to_end(fake_data_dir, tmp_path, baseline):
    results = _run(_config(fake_data_dir, algorithm="ridge_regression", baseline=baseline),
                   tmp_path / baseline)
    labels = np.asarray(results["labels"])
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-5)
    assert len(results["test_accuracies"]) == 3
    if baseline == "true_labels":
        assert results["test_accuracy_mean"] > 0.5  # RR models learn the easy fake classes


def test_architecture_optimizer_and_step_transfer_are_keyed(fake_data_dir, tmp_path):
    config = _config(fake_data_dir, baseline="true_labels", eval_architectures=("lenet",),
                     eval_optimizers=("sgd", "adam"), step_offsets=(-5, 0, 10),
                     transfer_repetitions=2)
    results = _run(config, tmp_path / "transfer")
    assert set(results["architecture_transfer"]) == {"lenet"}
    # Keras's Adam and the protocol's (PyTorch-form) Adam are two rows, named as such.
    assert set(results["optimizer_transfer"]) == {"sgd", "keras_adam", "protocol_adam"}
    assert results["optimizer_transfer"]["protocol_adam"]["test_accuracies"] == \
        results["test_accuracies"][:2]
    assert set(results["step_offsets"]) == {"-5", "0", "10"}
    steps = results["num_train_steps"]
    assert results["step_offsets"]["10"]["num_train_steps"] == steps + 10
    for table in ("architecture_transfer", "optimizer_transfer", "step_offsets"):
        for entry in results[table].values():
            assert len(entry["test_accuracies"]) == 2
            assert 0.0 <= entry["test_accuracy_mean"] <= 1.0
    # Adam with model.fit on the true labels learns the easy fake classes.
    assert results["optimizer_transfer"]["keras_adam"]["test_accuracy_mean"] > 0.5
    # Offset 0 with the same seeds reproduces the main test's first two models.
    assert results["step_offsets"]["0"]["test_accuracies"] == results["test_accuracies"][:2]


def test_unknown_transfer_settings_are_refused(fake_data_dir, tmp_path):
    with pytest.raises(DistillError, match="unknown architecture 'vgg'"):
        _run(_config(fake_data_dir, eval_architectures=("vgg",)), tmp_path / "a")
    with pytest.raises(DistillError, match="eval_optimizers must be one of"):
        _run(_config(fake_data_dir, eval_optimizers=("adagrad2",)), tmp_path / "b")


@pytest.mark.parametrize("changes,message", [
    ({"outer_precision": "float8"}, "outer_precision must be"),
    ({"hypergradient": "sideways"}, "hypergradient must be"),
    ({"outer_splits": 0}, "outer_splits must be a whole number >= 1"),
    ({"label_smoothing": 1.0}, "label_smoothing must be in"),
    ({"base_selection": "stratified"}, "base_selection must be one of"),
    ({"architecture": "vgg"}, "unknown architecture"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, changes, message):
    with pytest.raises(DistillError, match=message):  # as the config is made, or by the run
        _run(_config(str(tmp_path / "no_data_here"), **changes), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before writing anything
