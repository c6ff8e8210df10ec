"""The whole-run horizon (issue 13, item 2): the outer loss after T training steps of a
fresh model, its hypergradient through all of them."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill.horizon import WholeRunSolver
from kerasdistill.distill.identity import loop_identity, run_identity
from kerasdistill.distill.learner_pool import LearnerPool
from kerasdistill.distill.loop import distill_labels
from kerasdistill.distill.meta_step import init_meta_state, make_meta_step
from kerasdistill.distill.registry import build_solver
from kerasdistill.distill.ridge_regression import RidgeRegressionSolver
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.errors import DistillError
from kerasdistill.models import ModelFactory
from kerasdistill.training.adam import adam_init, adam_update
from tests.conftest import assert_one_error, assert_refused_before_any_work, run_cli, tiny_config
from tests.test_hypergradient import hypergradient_and_finite_differences
from tests.test_meta_loop import _step_at_a_time, interrupted_and_resumed, tiny_loop_problem

FLOAT64_LENET = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")


def _weights(weights):
    return [w.numpy() for w in weights]


def _problem(horizon, inner=3, outer=16, seed=0):
    rng = np.random.default_rng(seed)
    inner_images = tf.constant(rng.normal(size=(horizon, inner, 28, 28, 1)))
    labels = rng.uniform(0.05, 1.0, size=(horizon, inner, 10))
    outer_images = tf.constant(rng.normal(size=(outer, 28, 28, 1)))
    outer_labels = tf.constant(rng.integers(0, 10, outer), tf.int32)
    return inner_images, tf.constant(labels / labels.sum(-1, keepdims=True)), outer_images, \
        outer_labels


def _whole_run_solver(horizon, learning_rate=0.05, initializations=3):
    # A large learning rate makes the labels' effect through Adam's steps clearly visible.
    return WholeRunSolver(UnrolledSGDSolver(FLOAT64_LENET, hypergradient="reverse",
                                            learner_learning_rate=learning_rate),
                          horizon_steps=horizon, initializations=initializations)


def test_whole_run_hypergradient_matches_finite_differences():
    solver = _whole_run_solver(horizon=3)
    learner = solver.init_meta_learner(seed=2)
    inner_images, labels, outer_images, outer_labels = _problem(3)
    # eps = 1e-8: Adam's normalisation (g / sqrt(v), v tiny after one step) is strongly
    # curved, so central differences carry an O(eps^2) error that is still 4e-5 relative
    # at eps = 1e-7 (measured: 4e-3, 4e-5, 4e-7 at 1e-6, 1e-7, 1e-8), while the float64
    # round-off at 1e-8 is ~1e-8 absolute.
    analytic, numeric = hypergradient_and_finite_differences(
        solver, learner, inner_images, labels, outer_images, outer_labels, eps=1e-8)
    # The labels of every step matter, the first step's through Adam's moments and the
    # Hessians of the steps after it.
    assert all(np.abs(numeric[k]).max() > 1e-5 for k in range(3))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_whole_run_trains_the_model_an_evaluation_model_would():
    """The T steps are an evaluation model's T training steps from the bank's start, and
    the outer loss is that trained model's cross-entropy on the outer batch."""
    solver = _whole_run_solver(horizon=4, learning_rate=1e-3)
    learner = solver.init_meta_learner(seed=5)
    inner_images, labels, outer_images, outer_labels = _problem(4)
    model = solver.init_learner(seed=5)  # start 0 of the bank is the seed's own learner
    for k in range(4):
        model = solver.train_step(model, inner_images[k], labels[k])
    step = solver.meta_gradient(learner, inner_images, labels, outer_images, outer_labels)
    weights, _, _ = solver.train_from_start(tuple(w[0] for w in learner.weights), (),
                                            inner_images, labels)
    for got, want in zip(_weights(weights), _weights(model.weights)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    logits = solver.predict(model, outer_images)
    expected = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(outer_labels,
                                                                             logits))
    np.testing.assert_allclose(float(step.outer_loss), float(expected), rtol=1e-10)
    assert int(step.learner.next_start) == 1


def test_a_horizon_of_one_step_takes_the_outer_loop_s_single_batch():
    """With T = 1 the loop draws one inner batch (n_i, no step axis): the one Adam step
    of a fresh model, differentiated through."""
    solver = _whole_run_solver(horizon=1)
    learner = solver.init_meta_learner(seed=4)
    inner_images, labels, outer_images, outer_labels = _problem(1)
    step = solver.meta_gradient(learner, inner_images[0], labels[0], outer_images,
                                outer_labels)
    assert step.inner_label_grad.shape == labels[0].shape
    model = solver.train_step(solver.init_learner(seed=4), inner_images[0], labels[0])
    expected = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        outer_labels, solver.predict(model, outer_images)))
    np.testing.assert_allclose(float(step.outer_loss), float(expected), rtol=1e-10)
    assert np.abs(step.inner_label_grad.numpy()).max() > 0


def test_whole_run_hypergradient_is_finite_and_the_same_under_xla():
    """Weights whose gradient is exactly 0 (a ReLU unit off on every image) keep Adam's
    v at 0, where XLA's reverse pass of sqrt gave NaN; the guarded root gives 0."""
    solver = WholeRunSolver(UnrolledSGDSolver(ModelFactory("lenet", (28, 28, 1), 10),
                                              hypergradient="reverse"), horizon_steps=2)
    learner = solver.init_meta_learner(seed=0)
    inner_images, labels, outer_images, outer_labels = (
        tf.cast(t, tf.float32) if t.dtype == tf.float64 else t for t in _problem(2))

    def hypergradient(images, soft_labels):
        return solver.meta_gradient(learner, images, soft_labels, outer_images,
                                    outer_labels).inner_label_grad

    plain = tf.function(hypergradient)(inner_images, labels).numpy()
    compiled = tf.function(hypergradient, jit_compile=True)(inner_images, labels).numpy()
    assert np.isfinite(compiled).all() and np.abs(plain).max() > 0
    # Not bit for bit: XLA fuses differently, and the hypergradient through Adam amplifies
    # rounding (test_whole_run_goes_through_the_one_outer_loop_and_resumes_exactly).
    np.testing.assert_allclose(compiled, plain, atol=0.05 * np.abs(plain).max())


def test_guarded_adam_is_adam_forward_and_finite_backward_at_zero():
    params = [tf.constant([1.0, 2.0])]
    grads = [tf.constant([0.0, 0.5])]
    plain = adam_update(params, grads, adam_init(params), 0.1)
    guarded = adam_update(params, grads, adam_init(params), 0.1, differentiable=True)
    for a, b in zip(tf.nest.flatten(plain), tf.nest.flatten(guarded)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    @tf.function(jit_compile=True)
    def slope(g):
        with tf.GradientTape() as tape:
            tape.watch(g)
            (new,), _ = adam_update(params, [g], adam_init(params), 0.1, differentiable=True)
        return tape.gradient(new, g)

    assert np.isfinite(slope(grads[0]).numpy()).all()


def test_meta_steps_go_round_the_bank_of_starts():
    solver = _whole_run_solver(horizon=2, initializations=2)
    learner = solver.init_meta_learner(seed=1)
    first = _weights(solver.init_learner(seed=1).weights)
    np.testing.assert_array_equal(learner.weights[0][0].numpy(), first[0])
    assert not np.array_equal(learner.weights[0][0].numpy(), learner.weights[0][1].numpy())
    inner_images, labels, outer_images, outer_labels = _problem(2)
    losses = []
    for _ in range(3):
        step = solver.meta_gradient(learner, inner_images, labels, outer_images, outer_labels)
        learner = step.learner
        losses.append(float(step.outer_loss))
    assert losses[0] == losses[2] != losses[1]  # starts 0, 1, 0
    # A reset of the outer loop changes nothing: every meta step starts fresh anyway.
    kept = solver.admit_fresh_learner(learner, solver.init_learner(seed=9))
    assert kept is learner


def test_whole_run_meta_step_updates_labels_from_every_step_s_batch():
    solver = _whole_run_solver(horizon=2)
    rng = np.random.default_rng(3)
    base_images = tf.constant(rng.normal(size=(6, 28, 28, 1)))
    soft_labels = tf.constant(rng.dirichlet(np.ones(10), size=6))
    indices = tf.constant([[0, 1, 2], [3, 4, 2]], tf.int32)  # image 2 in both batches
    state = init_meta_state(solver, soft_labels, seed=0)
    _, outer_images, outer_labels = _problem(1)[1:]
    new_state, metrics = make_meta_step(solver, label_learning_rate=0.01)(
        state, base_images, indices, outer_images, outer_labels)
    assert bool(tf.reduce_all(metrics.finite))
    moved = np.abs(new_state.soft_labels.numpy() - soft_labels.numpy()).max(axis=1)
    assert (moved[:5] > 1e-4).all() and moved[5] == 0.0  # image 5 is in no batch
    assert int(new_state.learner.next_start) == 1


def test_whole_run_goes_through_the_one_outer_loop_and_resumes_exactly(tmp_path):
    target, base_images, config = tiny_loop_problem(epochs=4, validation_every_epochs=2)
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32", hypergradient="reverse",
                          horizon_steps=3)
    assert isinstance(solver, WholeRunSolver) and solver.inner_batches_per_step == 3
    one_epoch = dataclasses.replace(config, epochs=1)
    expected_labels, _, steps = _step_at_a_time(solver, one_epoch, base_images, target,
                                                config.reset_window)
    alone = distill_labels(solver, one_epoch, base_images, target, verbose=False,
                           validation_checkpoints=[5, 10, 20])
    # The same draws and starts as the step-at-a-time path; the labels agree only to
    # float32 rounding *amplified*: through Adam's first steps, a weight whose gradient
    # is ~1e-8 (epsilon's size) moves by g / (|g| + eps), whose slope is ~1e8, so a
    # while-loop body that fuses ops differently from a lone function gives a
    # hypergradient ~1% apart (measured: a 1e-6 relative change of the starting weights
    # moves it by 0.8% in float32, 2.4% in float64; BUILD_NOTES.md). Hence the loose
    # tolerance here; resuming below is exact, bit for bit.
    assert alone.meta_steps == steps == 10
    moved = np.abs(expected_labels - 0.1).max()
    assert moved > 5e-3
    np.testing.assert_allclose(alone.final_soft_labels, expected_labels, atol=0.3 * moved)
    checkpoint_dir = str(tmp_path / "checkpoint")
    interrupted_and_resumed(solver, config, base_images, target, checkpoint_dir)
    # Another horizon, or the K-step look-ahead of the same length, is another run.
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    others = [build_solver("second_order", factory, hypergradient="reverse", horizon_steps=4),
              build_solver("second_order", factory, hypergradient="reverse", unroll_steps=3)]
    identities = {str(loop_identity(config, s)) for s in [solver] + others}
    assert len(identities) == 3
    assert loop_identity(config, solver)["horizon_steps"] == 3
    assert "unroll_steps" not in loop_identity(config, solver)
    with pytest.raises(DistillError, match="other settings"):
        distill_labels(others[0], config, base_images, target, verbose=False,
                       checkpoint_dir=checkpoint_dir, validation_checkpoints=[5, 10, 20])


def test_whole_run_evaluates_and_exports_the_wrapped_solver_s_models():
    single = UnrolledSGDSolver(ModelFactory("lenet", (28, 28, 1), 10), hypergradient="reverse")
    solver = WholeRunSolver(single, horizon_steps=5)
    for a, b in zip(_weights(solver.init_learner(9).weights),
                    _weights(single.init_learner(9).weights)):
        np.testing.assert_array_equal(a, b)
    assert solver.recipe() == single.recipe() and solver.name == single.name
    assert solver.model_stack() is not None


@pytest.mark.parametrize("make,message", [
    (lambda f: WholeRunSolver(UnrolledSGDSolver(f, hypergradient="reverse"), 0),
     "horizon_steps must be a whole number >= 1"),
    (lambda f: WholeRunSolver(UnrolledSGDSolver(f, hypergradient="reverse"), 2.0),
     "whole number"),
    (lambda f: WholeRunSolver(UnrolledSGDSolver(f), 5), "needs --hypergradient=reverse"),
    (lambda f: WholeRunSolver(UnrolledSGDSolver(f, hypergradient="reverse", unroll_steps=2),
                              5), "drop --unroll_steps and --learner_pool"),
    (lambda f: WholeRunSolver(RidgeRegressionSolver(f), 5), "needs --algorithm=second_order"),
    (lambda f: WholeRunSolver(UnrolledSGDSolver(f, hypergradient="reverse"), 5,
                              initializations=0), "initializations"),
    (lambda f: build_solver("second_order", f, hypergradient="reverse", horizon_steps=5,
                            learner_pool=2), "drop --unroll_steps and --learner_pool"),
    (lambda f: LearnerPool(WholeRunSolver(UnrolledSGDSolver(f, hypergradient="reverse"), 5),
                           2), None),
])
def test_bad_whole_run_solvers_are_refused(make, message):
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    if message is None:  # a pool of whole runs: the pool wants single learners
        with pytest.raises(DistillError, match="single learners"):
            solver = make(factory)
            assert solver.learners_per_step == 1, "not refused"
        return
    with pytest.raises(DistillError, match=message):
        make(factory)


_HORIZON = {"horizon_steps": 5, "hypergradient": "reverse", "validation_steps": "search"}


@pytest.mark.parametrize("changes,message", [
    ({"horizon_steps": -1}, "horizon_steps must be a whole number"),
    ({"horizon_steps": True}, "horizon_steps must be a whole number"),
    ({**_HORIZON, "hypergradient": "forward"}, "needs --hypergradient=reverse"),
    ({**_HORIZON, "validation_steps": "learner"}, "needs --validation_steps=search"),
    ({**_HORIZON, "algorithm": "ridge_regression"}, "needs --algorithm=second_order"),
    ({**_HORIZON, "unroll_steps": 2}, "drop --unroll_steps and --learner_pool"),
    ({**_HORIZON, "learner_pool": 2}, "drop --unroll_steps and --learner_pool"),
])
def test_bad_whole_run_settings_are_refused_before_any_work(tmp_path, changes, message):
    assert_refused_before_any_work(tmp_path, message, **changes)


def test_a_baseline_with_a_horizon_is_refused(tmp_path):
    with pytest.raises(DistillError, match="learns nothing"):
        tiny_config(str(tmp_path), horizon_steps=5, hypergradient="reverse", baseline="teacher")


def test_horizon_cli_refuses_with_one_error(tmp_path):
    result = run_cli("experiments.distill", f"--model_dir={tmp_path / 'run'}",
                     "--horizon_steps=50", "--validation_steps=search",
                     f"--data_dir={tmp_path}")
    assert_one_error(result, "needs --hypergradient=reverse")
    assert not (tmp_path / "run").exists()


def test_horizon_identity():
    """Runs recorded before the horizon existed are horizon-0 runs."""
    config = dataclasses.asdict(tiny_config(None))
    old = {k: v for k, v in config.items() if k != "horizon_steps"}
    assert run_identity(old) == run_identity(config)
    assert "horizon_steps" not in run_identity(config)
    whole_run = dataclasses.asdict(tiny_config(None, **_HORIZON))
    assert run_identity(whole_run)["horizon_steps"] == 5


def test_label_learning_rate_flag_refuses_a_bad_rate_with_one_error(tmp_path):
    result = run_cli("experiments.distill", f"--model_dir={tmp_path / 'run'}",
                     "--label_learning_rate=0", f"--data_dir={tmp_path}")
    assert_one_error(result, "label_learning_rate must be a finite number > 0, got 0.0")
    assert not (tmp_path / "run").exists()


def test_the_benchmark_times_the_horizon_step_and_refuses_what_it_cannot(tmp_path):
    """The figures come from a benchmark script, not a test: this checks only that its
    horizon mode runs the whole-run solver and records what BENCHMARKS.md quotes."""
    import json
    out = tmp_path / "bench.json"
    result = run_cli("experiments.benchmark", "--horizon_steps=2", "--hypergradient=reverse",
                     "--steps=20", "--rounds=1", "--outer_batch_size=32",
                     f"--output_json={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "whole-run horizon T = 2" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["configuration"]["horizon_steps"] == 2
    assert figures["timed_steps"] == 20 and figures["ms_per_step_median"] > 0
    assert figures["peak_memory_gib"] > 0 and figures["plain_reference_ms_per_step_median"] is None
    for flags, message in ((["--horizon_steps=2"], "needs --hypergradient=reverse"),
                           (["--horizon_steps=2", "--hypergradient=reverse", "--measure=loop"],
                            "times the meta step only"),
                           (["--horizon_steps=-1"], "horizon_steps must be a whole number >= 0")):
        refused = run_cli("experiments.benchmark", *flags)
        assert refused.returncode != 0 and message in refused.stderr
