"""Issue 13's options: where labels start (uniform, one-hot, teacher), how Adam reaches
them (clip or softmax), and a hypergradient unrolled through K inner steps."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.data.pipeline import inner_batch_indices, random_subset
from kerasdistill.distill.identity import run_identity
from kerasdistill.distill.loop import DistillConfig, StartingLabels, distill_labels
from kerasdistill.distill.meta_step import init_meta_state, make_meta_step, project_to_simplex_rows
from kerasdistill.distill.registry import build_solver
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.errors import DistillError
from kerasdistill.experiment import run_experiment
from kerasdistill.models import ModelFactory
from kerasdistill.training.adam import adam_init, adam_update
from tests.conftest import assert_refused_before_any_work, tiny_config
from tests.test_hypergradient import hypergradient_and_finite_differences
from tests.test_meta_loop import _tiny_target


def _float64_problem(num_batches, inner=4, outer=16, seed=0):
    rng = np.random.default_rng(seed)
    inner_images = tf.constant(rng.normal(size=(num_batches, inner, 28, 28, 1)))
    outer_images = tf.constant(rng.normal(size=(outer, 28, 28, 1)))
    outer_labels = tf.constant(rng.integers(0, 10, outer), tf.int32)
    labels = rng.uniform(0.05, 1.0, size=(num_batches, inner, 10))
    return inner_images, tf.constant(labels / labels.sum(-1, keepdims=True)), outer_images, \
        outer_labels


@pytest.mark.parametrize("unroll_steps", [2, 3])
def test_unrolled_hypergradient_matches_finite_differences(unroll_steps):
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    solver = UnrolledSGDSolver(factory, inner_learning_rate=0.5, hypergradient="reverse",
                               unroll_steps=unroll_steps)
    learner = solver.init_learner(seed=3)
    inner_images, labels, outer_images, outer_labels = _float64_problem(unroll_steps)
    analytic, numeric = hypergradient_and_finite_differences(
        solver, learner, inner_images, labels, outer_images, outer_labels, eps=1e-7)
    # Every batch's labels matter, the first one's through the later steps' Hessians.
    assert np.abs(numeric[0]).max() > 1e-4 and np.abs(numeric[-1]).max() > 1e-4
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_unrolled_step_trains_the_learner_as_the_one_step_solver_does():
    """K = 2 looks further ahead, but the learner takes the same one Adam step on the
    first inner batch as K = 1; and K = 1 in reverse mode is today's step."""
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    inner_images, labels, outer_images, outer_labels = _float64_problem(2)
    one = UnrolledSGDSolver(factory, hypergradient="forward")
    one_reverse = UnrolledSGDSolver(factory, hypergradient="reverse", unroll_steps=1)
    two = UnrolledSGDSolver(factory, hypergradient="reverse", unroll_steps=2)
    learner = one.init_learner(seed=1)
    step_one = one.meta_gradient(learner, inner_images[0], labels[0], outer_images, outer_labels)
    step_rev = one_reverse.meta_gradient(learner, inner_images[0], labels[0], outer_images,
                                         outer_labels)
    step_two = two.meta_gradient(learner, inner_images, labels, outer_images, outer_labels)
    np.testing.assert_allclose(step_rev.inner_label_grad, step_one.inner_label_grad,
                               rtol=1e-9, atol=1e-13)
    for a, b in zip(step_two.learner.weights, step_one.learner.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert float(step_two.inner_loss) == float(step_one.inner_loss)
    # ...while the look-ahead itself differs: the outer loss is taken two steps on.
    assert abs(float(step_two.outer_loss) - float(step_one.outer_loss)) > 1e-6


def test_inner_batch_draws_of_an_unroll():
    seed = tf.constant([11, 4], tf.int32)
    one = inner_batch_indices(20, 5, 1, seed).numpy()
    three = inner_batch_indices(20, 5, 3, seed).numpy()
    np.testing.assert_array_equal(one, random_subset(20, 5, seed).numpy())
    assert three.shape == (3, 5)
    np.testing.assert_array_equal(three[0], one)  # K = 1's batch is the first of K
    assert all(len(set(row)) == 5 for row in three)
    assert len({tuple(row) for row in three}) == 3
    other_step = inner_batch_indices(20, 5, 3, tf.constant([11, 5], tf.int32)).numpy()
    assert not np.array_equal(other_step[1], three[1])



@pytest.mark.parametrize("num_batches", [2, 3, 200])
def test_the_k_draws_made_at_once_are_the_k_separate_draws(num_batches):
    """Vectorised for the horizon's T = 200 batches; the numbers must stay those of K
    separate draws (batch k from seed folded with k), or resumed runs of earlier
    versions would see other batches. Plain and under XLA."""
    from kerasdistill.data.pipeline import fold_in
    seed = tf.constant([1234, 77], tf.int32)
    separate = np.stack([random_subset(100, 50, seed if k == 0 else fold_in(seed, k)).numpy()
                         for k in range(num_batches)])
    np.testing.assert_array_equal(inner_batch_indices(100, 50, num_batches, seed).numpy(),
                                  separate)
    compiled = tf.function(lambda s: inner_batch_indices(100, 50, num_batches, s),
                           jit_compile=True)
    np.testing.assert_array_equal(compiled(seed).numpy(), separate)


def test_meta_step_sums_the_gradients_of_an_example_in_several_batches():
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    solver = UnrolledSGDSolver(factory, inner_learning_rate=0.5, hypergradient="reverse",
                               unroll_steps=2)
    rng = np.random.default_rng(2)
    base_images = tf.constant(rng.normal(size=(6, 28, 28, 1)))
    soft_labels = tf.constant(rng.dirichlet(np.ones(10), size=6))
    indices = tf.constant([[0, 1, 2, 3], [2, 3, 4, 5]], tf.int32)  # 2 and 3 in both
    _, _, outer_images, outer_labels = _float64_problem(1, outer=16)
    state = init_meta_state(solver, soft_labels, seed=4)
    new_state, _ = make_meta_step(solver, label_learning_rate=0.01)(
        state, base_images, indices, outer_images, outer_labels)
    grads = solver.meta_gradient(state.learner, tf.gather(base_images, indices),
                                 tf.gather(soft_labels, indices), outer_images,
                                 outer_labels).inner_label_grad.numpy()
    dense = np.zeros((6, 10))
    for k in range(2):
        for j, row in enumerate(indices.numpy()[k]):
            dense[row] += grads[k, j]
    (expected,), _ = adam_update([soft_labels], [tf.constant(dense)], adam_init([soft_labels]),
                                 0.01)
    np.testing.assert_allclose(new_state.soft_labels.numpy(),
                               project_to_simplex_rows(expected).numpy(), rtol=1e-9, atol=1e-12)


def test_softmax_parameterization_is_adam_on_logits():
    """Two meta steps with the softmax parameterisation equal Adam on a logit matrix
    kept outside (softmax(z) the labels), with the gradient through the softmax."""
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    solver = UnrolledSGDSolver(factory, inner_learning_rate=0.5)
    rng = np.random.default_rng(3)
    base_images = tf.constant(rng.normal(size=(6, 28, 28, 1)))
    logits = tf.constant(rng.normal(size=(6, 10)))
    _, _, outer_images, outer_labels = _float64_problem(1, outer=16)
    step = make_meta_step(solver, label_learning_rate=0.05, label_parameterization="softmax")
    state = init_meta_state(solver, tf.nn.softmax(logits), seed=4)
    optimizer = adam_init([logits])
    for indices in ([0, 2, 4], [1, 2, 5]):
        indices = tf.constant(indices, tf.int32)
        learner = state.learner
        with tf.GradientTape() as tape:
            tape.watch(logits)
            labels = tf.nn.softmax(logits)
        inner_grad = solver.meta_gradient(learner, tf.gather(base_images, indices),
                                          tf.gather(labels, indices), outer_images,
                                          outer_labels).inner_label_grad
        dense = tf.scatter_nd(indices[:, None], inner_grad, labels.shape)
        logit_grad = tape.gradient(labels, logits, output_gradients=dense)
        (logits,), optimizer = adam_update([logits], [logit_grad], optimizer, 0.05)
        state, _ = step(state, base_images, indices, outer_images, outer_labels)
    np.testing.assert_allclose(state.soft_labels.numpy(), tf.nn.softmax(logits).numpy(),
                               rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(state.soft_labels.numpy().sum(1), 1.0, rtol=1e-12)
    assert not np.allclose(state.soft_labels.numpy(), tf.nn.softmax(  # it moved
        tf.constant(np.random.default_rng(3).normal(size=(6, 10)))).numpy(), atol=1e-4)


def _starting(labels, steps=20, name="given"):
    return StartingLabels(labels=labels, num_train_steps=steps, record={"label_init": name})


def test_starting_labels_are_the_state_at_step_zero_and_kept_when_best():
    """Started from the base images' true classes with a label learning rate that wrecks
    them, the run ends with exactly the labels and step count it started from."""
    target = _tiny_target()
    base_images, base_classes = target.train_images[:10], target.train_labels[:10]
    one_hot = np.eye(10, dtype=np.float32)[base_classes]
    config = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=2,
                           outer_batch_size=32, seed=3, validation_every_epochs=1,
                           label_learning_rate=5.0)
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    result = distill_labels(solver, config, base_images, target, verbose=False,
                            starting_labels=lambda: _starting(one_hot, 40, "one_hot"))
    first = result.validation_curve[0]
    assert first["epoch"] == 0 and first["starting_labels"] and first["num_train_steps"] == 40
    assert [p["epoch"] for p in result.validation_curve] == [0, 1, 2]
    assert all(p["validation_error"] > first["validation_error"]
               for p in result.validation_curve[1:])
    np.testing.assert_array_equal(result.soft_labels, one_hot)
    assert result.num_train_steps == 40 and result.starting_labels == {"label_init": "one_hot"}
    assert not np.allclose(result.final_soft_labels, one_hot)  # meta-learning did move them


def test_starting_labels_are_made_once_and_not_again_on_resume(tmp_path):
    target = _tiny_target()
    start = np.random.default_rng(0).dirichlet(np.ones(10), size=10).astype(np.float32)
    config = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=2,
                           outer_batch_size=32, seed=3, validation_every_epochs=1)
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    calls = []

    def make():
        calls.append(1)
        return _starting(start)
    whole = distill_labels(solver, config, target.train_images[:10], target, verbose=False,
                           starting_labels=make)
    first = distill_labels(solver, dataclasses.replace(config, epochs=1),
                           target.train_images[:10], target, verbose=False,
                           checkpoint_dir=str(tmp_path), starting_labels=make)
    resumed = distill_labels(solver, config, target.train_images[:10], target, verbose=False,
                             checkpoint_dir=str(tmp_path), starting_labels=make)
    assert len(calls) == 2 and resumed.resumed_from_epoch == 1 and first.meta_steps == 10
    assert resumed.validation_curve == whole.validation_curve
    np.testing.assert_array_equal(resumed.final_soft_labels, whole.final_soft_labels)
    assert resumed.starting_labels == {"label_init": "given"}
    # A checkpoint of a uniform start is not continued from given labels, nor back.
    uniform_dir = str(tmp_path / "uniform")
    distill_labels(solver, dataclasses.replace(config, epochs=1), target.train_images[:10],
                   target, verbose=False, checkpoint_dir=uniform_dir)
    with pytest.raises(DistillError, match="other settings"):
        distill_labels(solver, config, target.train_images[:10], target, verbose=False,
                       checkpoint_dir=uniform_dir, starting_labels=make)


@pytest.mark.parametrize("labels,steps,message", [
    (np.full((10, 9), 1 / 9), 20, "shape"),
    (np.full((10, 10), 0.2), 20, "sum to 1"),
    (np.eye(10) * 2 - np.full((10, 10), 0.1), 20, "non-negative"),
    (np.full((10, 10), np.nan), 20, "finite"),
    (np.full((10, 10), 0.1), 0, "num_train_steps must be positive"),
])
def test_bad_starting_labels_are_refused(labels, steps, message):
    target = _tiny_target()
    config = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=1,
                           outer_batch_size=32, seed=3)
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    with pytest.raises(DistillError, match=message):
        distill_labels(solver, config, target.train_images[:10], target, verbose=False,
                       starting_labels=lambda: _starting(labels.astype(np.float32), steps))


def test_teacher_start_is_the_teacher_baselines_labels(fake_data_dir, tmp_path):
    """--label_init=teacher starts from exactly the labels and step count of
    --baseline=teacher on the same base images, and scores them first."""
    teacher_settings = {"teacher_epochs": 1, "teacher_temperatures": (1.0, 4.0),
                        "baseline_max_steps": 30}
    baseline = run_experiment(tiny_config(fake_data_dir, baseline="teacher", **teacher_settings),
                              str(tmp_path / "baseline"), verbose=False)
    config = tiny_config(fake_data_dir, label_init="teacher", epochs=1, **teacher_settings)
    # A label learning rate that wrecks the labels: the start must then be what is kept.
    config = dataclasses.replace(config, distill=dataclasses.replace(config.distill,
                                                                     label_learning_rate=5.0))
    started = run_experiment(config, str(tmp_path / "started"), verbose=False)
    start = started["starting_labels"]
    assert start["label_init"] == "teacher"
    assert start["teacher"]["temperature"] == baseline["teacher"]["temperature"]
    assert start["num_train_steps"] == baseline["num_train_steps"]
    assert started["validation_curve"][0]["starting_labels"]
    assert started["validation_curve"][0]["num_train_steps"] == baseline["num_train_steps"]
    assert started["kept_starting_labels"]
    np.testing.assert_array_equal(started["labels"], baseline["labels"])
    assert started["num_train_steps"] == baseline["num_train_steps"]
    final = np.asarray(started["final_labels"])
    np.testing.assert_allclose(final.sum(1), 1.0, rtol=1e-5)
    assert "starting_labels_seconds" in started["wall_times"]


def test_one_hot_start_scores_the_true_labels_first(fake_data_dir, tmp_path):
    config = tiny_config(fake_data_dir, label_init="one_hot", epochs=1, baseline_max_steps=30)
    config = dataclasses.replace(config, distill=dataclasses.replace(config.distill,
                                                                     label_learning_rate=5.0))
    results = run_experiment(config, str(tmp_path / "run"), verbose=False)
    assert results["starting_labels"]["label_init"] == "one_hot"
    assert results["validation_curve"][0]["starting_labels"]
    assert len(results["validation_curve"]) == 2
    assert results["kept_starting_labels"]
    np.testing.assert_array_equal(results["labels"], np.eye(10)[results["base_source_labels"]])
    assert results["num_train_steps"] == results["starting_labels"]["num_train_steps"]


def test_identity_of_the_new_settings():
    """Old configs (no label_init, unroll_steps, label_parameterization) are the
    defaults' runs; a teacher start keeps the teacher's settings in the identity."""
    config = dataclasses.asdict(tiny_config(None))
    old = {k: v for k, v in config.items()
           if k not in ("label_init", "unroll_steps", "validation_steps")}
    old["distill"] = {k: v for k, v in config["distill"].items()
                      if k != "label_parameterization"}
    assert run_identity(old) == run_identity(config)
    # ...and identities recorded before these settings existed (results.json) still match.
    assert not {"label_init", "unroll_steps", "distill.label_parameterization",
                "validation_steps"} & set(run_identity(config))
    softmax = dataclasses.asdict(tiny_config(None))
    softmax["distill"]["label_parameterization"] = "softmax"
    assert run_identity(softmax)["distill.label_parameterization"] == "softmax"
    teacher = dataclasses.asdict(tiny_config(None, label_init="teacher"))
    assert "teacher_epochs" in run_identity(teacher)
    assert "baseline_max_steps" in run_identity(teacher)
    assert "teacher_epochs" not in run_identity(config)
    assert run_identity(teacher) != run_identity(config)


@pytest.mark.parametrize("changes,message", [
    ({"label_init": "random"}, "label_init must be one of"),
    ({"label_init": "teacher", "baseline": "teacher"}, "learns nothing"),
    ({"label_init": "one_hot", "source": "fashion_mnist"}, "needs base examples from the target"),
    ({"unroll_steps": 2}, "needs hypergradient='reverse'"),
    ({"unroll_steps": 0}, "unroll_steps must be a whole number"),
    ({"unroll_steps": 2, "algorithm": "ridge_regression"}, "is for --algorithm=second_order"),
    ({"label_init": "one_hot", "distill": DistillConfig(
        num_base_examples=10, inner_batch_size=5, label_parameterization="softmax")},
     "cannot move"),
])
def test_bad_beyond_settings_are_refused_before_any_work(tmp_path, changes, message):
    assert_refused_before_any_work(tmp_path, message, **changes)


def test_unknown_label_parameterization_is_refused():
    with pytest.raises(DistillError, match="label_parameterization must be one of"):
        DistillConfig(num_base_examples=10, inner_batch_size=5, label_parameterization="tanh")


def _two_epoch_run():
    """A tiny target, its first 10 images as base images, a 2-epoch config validating
    every epoch, and the second-order solver."""
    target = _tiny_target()
    config = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=2,
                           outer_batch_size=32, seed=3, validation_every_epochs=1)
    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    return target, target.train_images[:10], config, solver


def test_searched_validation_scores_each_point_at_the_labels_own_step_count():
    """validation_steps=search: each point's step count is the search's choice on one
    model, and its error that of a fresh model of the point's own seed at that count."""
    from kerasdistill.seeding import VALIDATION, VALIDATION_SEARCH, derive_seed
    from kerasdistill.training.trainer import EvaluationTrainer, choose_num_steps
    target, base_images, config, solver = _two_epoch_run()
    checkpoints = [10, 25, 50, 75]
    searched = distill_labels(solver, config, base_images, target, verbose=False,
                              validation_checkpoints=checkpoints)
    paper = distill_labels(solver, config, base_images, target, verbose=False)
    # The same meta-learning: only the scoring differs.
    np.testing.assert_array_equal(searched.final_soft_labels, paper.final_soft_labels)
    assert [p["learner_steps"] for p in searched.validation_curve] == [
        p["num_train_steps"] for p in paper.validation_curve]
    last = searched.validation_curve[-1]
    trainer = EvaluationTrainer(solver, base_images, 5)
    steps, _ = choose_num_steps(trainer, searched.final_soft_labels, checkpoints,
                                derive_seed(3, VALIDATION_SEARCH, 1), target.validation_images,
                                target.validation_labels)
    assert last["num_train_steps"] == steps and steps in checkpoints
    assert last["validation_error"] == trainer.fresh_model_error(
        searched.final_soft_labels, steps, derive_seed(3, VALIDATION, 1),
        target.validation_images, target.validation_labels)
    for bad in ([0, 10], [25, 10], [10, 10]):
        with pytest.raises(DistillError, match="validation_checkpoints must be positive"):
            distill_labels(solver, config, base_images, target, verbose=False,
                           validation_checkpoints=bad)


def test_searched_validation_settings():
    searched = dataclasses.asdict(tiny_config(None, validation_steps="search"))
    assert run_identity(searched)["validation_steps"] == "search"
    assert "baseline_max_steps" in run_identity(searched)
    with pytest.raises(DistillError, match="validation_steps must be one of"):
        tiny_config(None, validation_steps="sometimes")
    with pytest.raises(DistillError, match="a baseline always searches"):
        tiny_config(None, validation_steps="search", baseline="true_labels")


def test_library_identity_tells_unrolls_apart_and_keeps_clip_as_before():
    from kerasdistill.distill.identity import loop_identity
    config = DistillConfig(num_base_examples=10, inner_batch_size=5)
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    one = loop_identity(config, UnrolledSGDSolver(factory))
    five = loop_identity(config, UnrolledSGDSolver(factory, hypergradient="reverse",
                                                      unroll_steps=5))
    assert "label_parameterization" not in one["distill"] and one != five
    softmax = loop_identity(dataclasses.replace(config, label_parameterization="softmax"),
                               UnrolledSGDSolver(factory))
    assert softmax["distill"]["label_parameterization"] == "softmax"


def test_validation_with_several_models_scores_their_mean_error():
    """validation_models=M: each point's error is the mean of M fresh models, model 0 the
    paper's one; the same meta-learning, and the start is scored the same way."""
    from kerasdistill.seeding import START_VALIDATION, VALIDATION, derive_seed
    from kerasdistill.training.trainer import EvaluationTrainer
    target, base_images, config, solver = _two_epoch_run()
    start = np.full((10, 10), 0.02, np.float32)
    start[np.arange(10), target.train_labels[:10]] = 0.82
    one = distill_labels(solver, config, base_images, target, verbose=False,
                         starting_labels=lambda: _starting(start))
    three = distill_labels(solver, dataclasses.replace(config, validation_models=3),
                           base_images, target, verbose=False,
                           starting_labels=lambda: _starting(start))
    np.testing.assert_array_equal(one.final_soft_labels, three.final_soft_labels)
    trainer = EvaluationTrainer(solver, base_images, 5, models_per_call=1)

    def mean_error(labels, steps, purpose, *point):
        seeds = [derive_seed(3, purpose, *point)] + [derive_seed(3, purpose, *point, m)
                                                      for m in (1, 2)]
        return np.mean([trainer.fresh_model_error(labels, steps, s, target.validation_images,
                                                  target.validation_labels) for s in seeds])

    start_point, last = three.validation_curve[0], three.validation_curve[-1]
    assert start_point["validation_error"] == pytest.approx(
        mean_error(start, 20, START_VALIDATION), abs=1e-9)
    assert last["validation_error"] == pytest.approx(mean_error(
        three.final_soft_labels, last["num_train_steps"], VALIDATION, 1), abs=0.011)
    assert one.validation_curve[-1]["validation_error"] == trainer.fresh_model_error(
        one.final_soft_labels, last["num_train_steps"], derive_seed(3, VALIDATION, 1),
        target.validation_images, target.validation_labels)
    for bad in (0, -1, True, 2.0):
        with pytest.raises(DistillError, match="validation_models must be a whole number >= 1"):
            DistillConfig(num_base_examples=10, inner_batch_size=5, validation_models=bad)
    from kerasdistill.distill.identity import loop_identity
    assert "validation_models" not in loop_identity(config, solver)["distill"]
    assert loop_identity(dataclasses.replace(config, validation_models=5), solver)[
        "distill"]["validation_models"] == 5
    recorded = dataclasses.asdict(tiny_config(None))
    assert "distill.validation_models" not in run_identity(recorded)
    recorded["distill"]["validation_models"] = 5
    assert run_identity(recorded)["distill.validation_models"] == 5
