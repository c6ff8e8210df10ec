"""Tests that pin the paper's protocol (docs/method.md section 2c and 3): each fails when the
behaviour it names breaks (the mutation that shows it is named in its docstring)."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill.loop import _FreshLearners
from kerasdistill.distill.meta_loop import StretchInputs, make_meta_loop, pick
from kerasdistill.distill.meta_step import init_meta_state, uniform_labels
from kerasdistill.distill.registry import build_solver
from kerasdistill.distill.resets import ResetTracker, max_resets_within, reset_state_of
from kerasdistill.experiment import run_experiment
from kerasdistill.models import ModelFactory
from kerasdistill.training.trainer import EvaluationTrainer
from tests.conftest import tiny_config, write_fake_npz


def test_test_models_use_the_best_validation_labels_and_steps(fake_data_dir, tmp_path,
                                                              monkeypatch):
    """Mutation: distill_labels returning the final labels (or the final step count)."""
    scripted = iter([0.5, 0.2, 0.4, 0.6])  # the best point is the second of four
    seen = []
    real_error = EvaluationTrainer.fresh_model_error

    def validation_error(self, soft_labels, num_steps, seed, images, labels):
        seen.append((np.asarray(soft_labels).copy(), num_steps))
        real_error(self, soft_labels, num_steps, seed, images, labels)
        return next(scripted)

    tested = []
    real_test = EvaluationTrainer.test_accuracies

    def test_accuracies(self, soft_labels, num_steps, seeds, images, labels):
        tested.append((np.asarray(soft_labels).copy(), num_steps))
        return real_test(self, soft_labels, num_steps, seeds, images, labels)

    monkeypatch.setattr(EvaluationTrainer, "fresh_model_error", validation_error)
    monkeypatch.setattr(EvaluationTrainer, "test_accuracies", test_accuracies)
    config = tiny_config(fake_data_dir, epochs=4)
    results = run_experiment(config, str(tmp_path / "run"), verbose=False)
    best_labels, best_steps = seen[1]
    final_labels = np.asarray(results["final_labels"])
    assert np.abs(best_labels - final_labels).max() > 1e-6, "the test needs them to differ"
    np.testing.assert_array_equal(results["labels"], best_labels)
    assert results["num_train_steps"] == best_steps
    np.testing.assert_array_equal(tested[0][0], best_labels)
    assert tested[0][1] == best_steps
    assert results["validation_error"] == 0.2


def test_validation_never_reads_the_test_split(tmp_path):
    """Mutation: validate() measuring on target.test_images (the selection then changes
    with the test split)."""
    runs = []
    for variant in ("a", "b"):
        data = tmp_path / variant
        data.mkdir()
        path = write_fake_npz(str(data / "mnist.npz"))
        arrays = dict(np.load(path))
        if variant == "b":  # another test split: other images, shuffled labels
            rng = np.random.default_rng(5)
            arrays["x_test"] = rng.permutation(arrays["x_test"])[:, ::-1]
            arrays["y_test"] = rng.permutation(arrays["y_test"])
            np.savez(path, **arrays)
        runs.append(run_experiment(tiny_config(str(data), epochs=3), str(tmp_path / f"run_{variant}"),
                                   verbose=False))
    a, b = runs
    assert a["validation_curve"] == b["validation_curve"]
    np.testing.assert_array_equal(a["labels"], b["labels"])
    assert a["num_train_steps"] == b["num_train_steps"]
    assert a["test_accuracies"] != b["test_accuracies"]  # the test split did differ


@pytest.mark.parametrize("algorithm", ["second_order", "ridge_regression"])
def test_a_reset_replaces_the_learner_and_its_optimizer_and_keeps_the_labels(algorithm):
    """Mutations: a reset that keeps the old learner's Adam moments or step count, or that
    also restarts the labels or their optimizer."""
    solver = build_solver(algorithm, ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    rng = np.random.default_rng(0)
    base = tf.constant(rng.normal(size=(10, 28, 28, 1)), tf.float32)
    train = tf.constant(rng.normal(size=(64, 28, 28, 1)), tf.float32)
    train_labels = tf.constant(rng.integers(0, 10, 64), tf.int32)
    window = 1
    meta_loop = make_meta_loop(solver, 5, window)
    fresh = _FreshLearners(solver, seed=3)
    state = init_meta_state(solver, uniform_labels(10, 10), seed=11)

    def stretch(steps):
        rows = np.stack([rng_rows.permutation(64)[:32] for _ in range(steps)]).astype(np.int32)
        return meta_loop(state, reset_state_of(ResetTracker(window)), StretchInputs(
            base, train, train_labels, tf.constant(rows), tf.constant(0), tf.constant(7),
            fresh.stack(0, max_resets_within(steps, window))))

    rng_rows = np.random.default_rng(1)
    first = stretch(12)
    resets = np.flatnonzero(first.reset_at.numpy())
    assert len(resets) > 0, "the test needs a reset"
    rng_rows = np.random.default_rng(1)  # the same rows again, up to the first reset
    result = stretch(int(resets[0]) + 1)
    expected = pick(fresh.stack(0, 1), 0)  # the learner of reset 1, untouched
    for ours, theirs in zip(tf.nest.flatten(result.state.learner), tf.nest.flatten(expected)):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # The labels and their Adam state carry on through the reset.
    steps = int(resets[0]) + 1
    assert int(result.state.label_optimizer.step) == steps
    assert np.abs(result.state.soft_labels.numpy() - 0.1).max() > 1e-6
    assert np.abs(result.state.label_optimizer.first_moments[0].numpy()).max() > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_learned_labels_beat_their_uniform_start_on_validation(tmp_path, seed):
    """Mutations: a label update of the wrong sign, or labels that never move (a zero
    learning rate), leave the validation error at the uniform labels' (chance)."""
    data = tmp_path / "data"
    data.mkdir()
    write_fake_npz(str(data / "mnist.npz"), num_train=1100, seed=seed)
    config = tiny_config(str(data), epochs=8, seed=seed, test_repetitions=1,
                         num_validation=200, num_base_examples=20, inner_batch_size=10)
    # A larger label learning rate than the paper's 1e-3 (~130 meta steps must show it),
    # and a reset window long enough for a step count that trains a model.
    config = dataclasses.replace(config, distill=dataclasses.replace(
        config.distill, label_learning_rate=0.01, reset_window=20))
    learned = run_experiment(config, str(tmp_path / "ld"), verbose=False)
    uniform = run_experiment(dataclasses.replace(config, baseline="uniform"),
                             str(tmp_path / "uniform"), verbose=False)
    assert uniform["validation_error"] > 0.7  # uniform labels teach nothing
    assert learned["validation_error"] < uniform["validation_error"] - 0.5  # measured: 0.65+
    assert os.path.exists(tmp_path / "ld" / "results.json")
