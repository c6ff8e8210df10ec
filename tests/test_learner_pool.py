"""Issue 13, item 2: a pool of learners per meta step (kerasdistill.distill.learner_pool)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill.identity import loop_identity, run_identity
from kerasdistill.distill.learner_pool import LearnerPool, member
from kerasdistill.distill.loop import distill_labels
from kerasdistill.distill.meta_step import init_meta_state, make_meta_step, project_to_simplex_rows
from kerasdistill.distill.registry import build_solver
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.errors import DistillError
from kerasdistill.models import ModelFactory
from kerasdistill.training.adam import adam_init, adam_update
from tests.conftest import assert_refused_before_any_work, tiny_config
from tests.test_meta_loop import _step_at_a_time, interrupted_and_resumed, tiny_loop_problem


def _weights(learner):
    return [w.numpy() for w in learner.weights]


def _problem(seed=0, num_base=8, inner=4, outer=16):
    rng = np.random.default_rng(seed)
    base_images = tf.constant(rng.normal(size=(num_base, 28, 28, 1)))
    soft_labels = tf.constant(rng.dirichlet(np.ones(10), size=num_base))
    indices = tf.constant(rng.permutation(num_base)[:inner], tf.int32)
    outer_images = tf.constant(rng.normal(size=(outer, 28, 28, 1)))
    outer_labels = tf.constant(rng.integers(0, 10, outer), tf.int32)
    return base_images, soft_labels, indices, outer_images, outer_labels


def test_pool_step_is_the_mean_of_its_members_steps():
    """Each member steps as a lone learner would; the labels take one Adam step on
    the mean of the members' hypergradients; the outer error is the members' mean."""
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    single = UnrolledSGDSolver(factory, inner_learning_rate=0.5)
    pool = LearnerPool(single, size=3)
    base_images, soft_labels, indices, outer_images, outer_labels = _problem()
    state = init_meta_state(pool, soft_labels, seed=5)
    # Member 0 is the lone run's learner; the others have their own seeds.
    assert [np.array_equal(a, b) for a, b in zip(
        _weights(member(state.learner.members, 0)), _weights(single.init_learner(5)))] == [
        True] * len(single.init_learner(5).weights)
    assert not np.array_equal(_weights(member(state.learner.members, 1))[0],
                              _weights(member(state.learner.members, 2))[0])
    new_state, metrics = make_meta_step(pool, label_learning_rate=0.01)(
        state, base_images, indices, outer_images, outer_labels)
    inner_images, inner_labels = tf.gather(base_images, indices), tf.gather(soft_labels, indices)
    grads, errors = [], []
    for j in range(3):
        step = single.meta_gradient(member(state.learner.members, j), inner_images,
                                    inner_labels, outer_images, outer_labels)
        grads.append(step.inner_label_grad.numpy())
        errors.append(float(step.outer_error))
        for got, want in zip(_weights(member(new_state.learner.members, j)),
                             _weights(step.learner)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(float(metrics.outer_error), np.mean(errors), rtol=1e-12)
    dense = np.zeros((8, 10))
    dense[indices.numpy()] = np.mean(grads, axis=0)
    (expected,), _ = adam_update([soft_labels], [tf.constant(dense)], adam_init([soft_labels]),
                                 0.01)
    np.testing.assert_allclose(new_state.soft_labels.numpy(),
                               project_to_simplex_rows(expected).numpy(), rtol=1e-9, atol=1e-12)
    # The mean is not any one member's gradient.
    assert np.abs(np.mean(grads, axis=0) - grads[0]).max() > 1e-6
    assert int(new_state.learner.oldest) == 0


def test_a_reset_replaces_the_oldest_member_in_turn():
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    pool = LearnerPool(UnrolledSGDSolver(factory), size=3)
    learner = pool.init_meta_learner(seed=1)
    start = [_weights(member(learner.members, j)) for j in range(3)]
    fresh = [pool.init_learner(seed=100 + k) for k in range(4)]
    replaced = []
    for k in range(4):
        learner = pool.admit_fresh_learner(learner, fresh[k])
        now = [_weights(member(learner.members, j)) for j in range(3)]
        replaced.append([j for j in range(3) if any(
            np.array_equal(a, b) for a, b in zip(now[j][:1], _weights(fresh[k])[:1]))])
        assert int(learner.oldest) == (k + 1) % 3
    assert replaced == [[0], [1], [2], [0]]
    # Member 1 is fresh[1]'s, member 2 fresh[2]'s, untouched by the later resets; and the
    # Adam state comes with the fresh weights.
    for a, b in zip(_weights(member(learner.members, 1)), _weights(fresh[1])):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_weights(member(learner.members, 2))[0], start[2][0])


def test_pool_runs_through_the_one_outer_loop_and_resumes_exactly(tmp_path):
    target, base_images, config = tiny_loop_problem(epochs=4, validation_every_epochs=2)
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32", learner_pool=2)
    assert isinstance(solver, LearnerPool) and solver.learners_per_step == 2
    expected_labels, tracker, _ = _step_at_a_time(solver, config, base_images, target,
                                                  config.reset_window)
    assert len(tracker.reset_points) >= 2, "the test needs resets to compare"
    # Interrupted after the first validation point, then resumed from its checkpoint.
    checkpoint_dir = str(tmp_path / "checkpoint")
    whole, _ = interrupted_and_resumed(solver, config, base_images, target, checkpoint_dir)
    assert whole.reset_points == tracker.reset_points
    np.testing.assert_allclose(whole.final_soft_labels, expected_labels, atol=1e-6)
    # A run without the pool, or with another size, is another run.
    single = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    identities = {str(loop_identity(config, s)) for s in (
        single, solver, LearnerPool(single, 3))}
    assert len(identities) == 3
    with pytest.raises(DistillError, match="other settings"):
        distill_labels(single, config, base_images, target, verbose=False,
                       checkpoint_dir=checkpoint_dir, validation_checkpoints=[5, 10, 20])


def test_pool_evaluates_and_exports_single_models():
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    single = UnrolledSGDSolver(factory)
    pool = LearnerPool(single, size=4)
    for a, b in zip(_weights(pool.init_learner(9)), _weights(single.init_learner(9))):
        np.testing.assert_array_equal(a, b)
    assert pool.recipe() == single.recipe() and pool.name == single.name
    assert pool.outer_precision == single.outer_precision


@pytest.mark.parametrize("size", [1, 0, -2, 2.0, True])
def test_bad_pool_sizes_are_refused(size):
    with pytest.raises(DistillError, match="at least 2 learners"):
        LearnerPool(UnrolledSGDSolver(ModelFactory("lenet", (28, 28, 1), 10)), size=size)


def test_a_pool_of_pools_is_refused():
    pool = LearnerPool(UnrolledSGDSolver(ModelFactory("lenet", (28, 28, 1), 10)), size=2)
    with pytest.raises(DistillError, match="single learners"):
        LearnerPool(pool, size=2)


@pytest.mark.parametrize("changes,message", [
    ({"learner_pool": 0}, "learner_pool must be a whole number >= 1, got 0"),
    ({"learner_pool": True}, "learner_pool must be a whole number >= 1, got True"),
    ({"learner_pool": 2}, "needs --validation_steps=search"),
    ({"learner_pool": 2, "baseline": "teacher"}, "learns nothing"),
])
def test_bad_pool_settings_are_refused_before_any_work(tmp_path, changes, message):
    assert_refused_before_any_work(tmp_path, message, **changes)


def test_pool_identity():
    """Runs recorded before the pool existed are pool-of-one runs."""
    config = dataclasses.asdict(tiny_config(None, validation_steps="search"))
    old = {k: v for k, v in config.items() if k != "learner_pool"}
    assert run_identity(old) == run_identity(config)
    assert "learner_pool" not in run_identity(config)
    pooled = dataclasses.asdict(tiny_config(None, validation_steps="search", learner_pool=4))
    assert run_identity(pooled)["learner_pool"] == 4


@pytest.mark.parametrize("wrapped", ["pool", "horizon"])
def test_the_library_call_refuses_a_pool_or_horizon_without_searched_validation(wrapped):
    """Not only the config and the CLI: `distill_labels` itself, before any work."""
    target, base_images, config = tiny_loop_problem(epochs=1, validation_every_epochs=1)
    settings = ({"learner_pool": 2} if wrapped == "pool" else
                {"horizon_steps": 3, "hypergradient": "reverse"})
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32", **settings)
    reason = "outlive the interval" if wrapped == "pool" else "keeps no online learner"
    with pytest.raises(DistillError, match=f"needs validation_checkpoints .*{reason}"):
        distill_labels(solver, config, base_images, target, verbose=False)
