"""Evaluation models trained together (ModelStack) against one at a time."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill.registry import build_solver
from kerasdistill.models import ModelFactory
from kerasdistill.training.model_stack import ModelStack, stackable
from kerasdistill.training.trainer import EvaluationTrainer, model_of

SHAPES = {"lenet": (28, 28, 1), "alexnet": (32, 32, 3)}


def _factory(architecture):
    return ModelFactory(architecture, SHAPES.get(architecture, (32, 32, 3)), 10)


@pytest.mark.parametrize("architecture", ["lenet", "alexnet"])
def test_stacked_logits_equal_each_model_alone(architecture):
    factory = _factory(architecture)
    model = factory.build(0)
    stack = ModelStack(model)
    seeds = [1, 2, 3]
    weights = [factory.initial_weights(seed)[0] for seed in seeds]
    stacked = [tf.stack(ws) for ws in zip(*weights)]
    rng = np.random.default_rng(0)
    own = tf.constant(rng.normal(size=(3, 4, *factory.input_shape)), tf.float32)
    shared = own[0]
    alone = [model.stateless_call(w, [], own[m])[0] for m, w in enumerate(weights)]
    np.testing.assert_allclose(stack.logits(stacked, own), tf.stack(alone), rtol=1e-4, atol=1e-5)
    alone_shared = [model.stateless_call(w, [], shared)[0] for w in weights]
    np.testing.assert_allclose(stack.logits(stacked, shared), tf.stack(alone_shared),
                               rtol=1e-4, atol=1e-5)


def test_resnet_is_not_stacked_and_trains_one_at_a_time():
    factory = _factory("resnet")
    assert not stackable(factory.build(0))
    solver = build_solver("second_order", factory, outer_precision="float32")
    assert solver.model_stack() is None
    ridge = build_solver("ridge_regression", _factory("lenet"), outer_precision="float32")
    assert ridge.model_stack() is None
    with pytest.raises(NotImplementedError):
        ridge.train_step_stacked(None, None, None, None)


def _trainers(architecture="lenet", models_per_call=20):
    factory = _factory(architecture)
    solver = build_solver("second_order", factory, outer_precision="float32")
    rng = np.random.default_rng(1)
    base = rng.normal(size=(12, *factory.input_shape)).astype(np.float32)
    labels = rng.dirichlet(np.ones(10), 12).astype(np.float32)
    return (EvaluationTrainer(solver, base, 4, models_per_call=1),
            EvaluationTrainer(solver, base, 4, models_per_call=models_per_call), labels)


# AlexNet's rounding differences grow with every step on these noise images: measured
# with 0.5's draws, seed 7's model has 0.05 % of its weights off by more than 1e-5 after
# 6 steps, 3.2 % after 15 (smoothly, step by step: rounding, not another batch).
@pytest.mark.parametrize("architecture,steps", [("lenet", 15), ("alexnet", 6)])
def test_models_trained_together_equal_models_trained_alone(architecture, steps):
    one, together, labels = _trainers(architecture)
    seeds = [5, 6, 7]
    stacked = together.train_together(labels, steps, seeds)
    images = tf.constant(np.random.default_rng(3).normal(
        size=(64, *one.solver.factory.input_shape)), tf.float32)
    for m, seed in enumerate(seeds):
        alone = one.train(one.solver.init_learner(seed), labels, steps, seed)
        together_m = model_of(stacked, m)
        got = np.concatenate([np.ravel(w) for w in together_m.weights])
        want = np.concatenate([np.ravel(w) for w in alone.weights])
        # Adam divides by the gradient's root mean square: where a gradient is near
        # zero, float32 rounding in another summation order can move that weight's
        # update by up to the learning rate (1e-3) per step. Almost all weights agree
        # to rounding, and the models compute the same function.
        assert np.mean(np.abs(got - want) > 1e-5) < 1e-3
        assert np.abs(got - want).max() < steps * 2e-3
        np.testing.assert_allclose(one.solver.predict(together_m, images),
                                   one.solver.predict(alone, images), atol=1e-3)
        assert float(together_m.optimizer.step) == steps


def test_test_accuracies_together_equal_one_at_a_time_in_groups():
    one, together, labels = _trainers(models_per_call=2)  # 5 seeds: groups of 2, 2, 1
    rng = np.random.default_rng(2)
    # Images far from every decision boundary would hide nothing; these are random, and
    # the models' weights agree to float32 rounding, so predictions agree.
    images = rng.normal(size=(300, 28, 28, 1)).astype(np.float32)
    labels_test = rng.integers(0, 10, 300)
    seeds = [11, 12, 13, 14, 15]
    alone = one.test_accuracies(labels, 20, seeds, images, labels_test)
    grouped = together.test_accuracies(labels, 20, seeds, images, labels_test)
    np.testing.assert_allclose(grouped, alone, atol=2 / 300)
    assert len(set(alone)) > 1, "different seeds must give different models"
