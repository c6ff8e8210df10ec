"""The outer loss at the end of a whole training run (issue 13, item 2).

The paper's meta step asks how one SGD step of an online learner, from wherever that
learner happens to be, changes the outer loss. Started from good labels (a teacher's)
that objective pulls them away from what makes a whole training run good: measured
in issue 13, validation error rose through meta-learning in every seed. This solver
asks the question a user's `model.fit` answers instead: train a *fresh* model from
scratch on the base images for T steps exactly as an evaluation model trains (Adam,
the learner's learning rate, a random minibatch of n_i base images each step), take
the outer loss of the trained model on the target batch, and differentiate it with
respect to the labels through all T steps.

- **Where the T steps start.** Each meta step starts from the next of a bank of B
  fresh initialisations (seeded from the run's seed, kept in the learner state and
  checkpointed), so the labels are learned for models in general, not for one
  starting point. The bank is the solver's learner: there is no online model, so the
  loop's reset rule has nothing to reset (`admit_fresh_learner` keeps the bank), and a
  run needs each validation point to search its step count
  (`validation_steps="search"`), as a learner pool does.
- **Inner batches.** The T minibatches are the outer loop's K = T inner batches
  (`inner_batches_per_step`): drawn, gathered and augmented as the K-step look-ahead's,
  and an image in several of them gets the sum of its gradients.
- **Hypergradient.** Reverse mode through a `tf.while_loop` of T Adam steps whose body
  takes the inner gradient under its own tape: the outer tape differentiates through
  the inner gradient (second order) and through Adam's moments. Forward mode over the
  labels would need one JVP per label entry. Memory grows linearly in T: the loop
  keeps each step's weights, Adam moments and the n_i images' activations (measured
  for LeNet, n_i = 50: 1.2 GB peak at T = 100, 1.9 GB at T = 300; BUILD_NOTES.md).
  Cost: about T times an evaluation model's training step, three times over (forward,
  the inner gradient, and the reverse pass through both).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from kerasdistill.config import positive, rule_horizon
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.seeding import HORIZON_INITS, derive_seed
from kerasdistill.training.adam import adam_init, adam_update
from kerasdistill.training.learner import pick, stack_nests
from kerasdistill.training.solver import SolverStep, WrappedSolver

DEFAULT_INITIALIZATIONS = 16


class HorizonLearner(NamedTuple):
    """The bank of starting weights (each tensor stacked on a leading axis of B) and
    which of them the next meta step trains from."""

    weights: tuple
    non_trainable: tuple
    next_start: tf.Tensor  # int32 scalar, counts meta steps; the start is next_start % B


class WholeRunSolver(WrappedSolver):
    """Labels learned through T training steps of a fresh model (module docstring).

    Example:
        solver = WholeRunSolver(UnrolledSGDSolver(factory, hypergradient="reverse"),
                                horizon_steps=200)
        state = init_meta_state(solver, teacher_labels, seed=1234)  # a bank of 16 starts
    """

    needs_searched_validation = ("it keeps no online learner, so there are no resets to "
                                 "learn a step count from")

    def __init__(self, solver: UnrolledSGDSolver, horizon_steps: int,
                 initializations: int = DEFAULT_INITIALIZATIONS):
        positive("horizon_steps", horizon_steps)  # a whole-run solver has a horizon
        rule_horizon(horizon_steps, solver.name, getattr(solver, "hypergradient", None),
                     solver.inner_batches_per_step, learner_pool=1)
        positive("initializations", initializations)
        super().__init__(solver)
        self.horizon_steps = horizon_steps
        self.initializations = initializations
        self.inner_batches_per_step = horizon_steps

    def identity_settings(self) -> dict:
        return {"horizon_steps": self.horizon_steps,
                "horizon_initializations": self.initializations}

    def init_meta_learner(self, seed: int) -> HorizonLearner:
        # Start 0 is the learner a paper run with this seed would start with.
        seeds = [seed] + [derive_seed(seed, HORIZON_INITS, j)
                          for j in range(1, self.initializations)]
        starts = [self.solver.init_learner(s) for s in seeds]
        return HorizonLearner(stack_nests([s.weights for s in starts]),
                              stack_nests([s.non_trainable for s in starts]),
                              tf.constant(0, tf.int32))

    def admit_fresh_learner(self, learner: HorizonLearner, fresh) -> HorizonLearner:
        # Every meta step already trains a fresh model: a reset changes nothing.
        del fresh
        return learner

    def train_from_start(self, weights, non_trainable, inner_images, inner_labels):
        """T Adam steps of an evaluation model from (weights, non_trainable) on batch t's
        images and labels at step t; returns (weights, non_trainable, mean inner loss).
        Differentiable in `inner_labels` (and the start) by an enclosing tape. With
        T = 1 the images and labels may come without their step axis (n_i x ...), as the
        outer loop draws a single inner batch."""
        solver = self.solver
        if self.horizon_steps == 1:  # the outer loop hands one batch without a K axis
            inner_images, inner_labels = inner_images[None], inner_labels[None]

        def body(step, weights, non_trainable, optimizer, loss_sum):
            loss, grads, non_trainable = solver._inner_gradient_at(
                weights, non_trainable, inner_images[step], inner_labels[step])
            weights, optimizer = adam_update(weights, grads, optimizer,
                                             solver.learner_learning_rate,
                                             differentiable=True)
            return step + 1, weights, non_trainable, optimizer, loss_sum + loss

        weights = tuple(weights)
        # maximum_iterations: a static trip count, which XLA needs to differentiate a
        # while-loop (its accumulators get a fixed size; tested under jit_compile=True).
        _, weights, non_trainable, _, loss_sum = tf.while_loop(
            lambda step, *_: step < self.horizon_steps, body,
            (tf.constant(0), weights, tuple(non_trainable), adam_init(weights),
             tf.zeros([], inner_labels.dtype)),
            maximum_iterations=self.horizon_steps)
        return weights, non_trainable, loss_sum / self.horizon_steps

    def meta_gradient(self, learner: HorizonLearner, inner_images, inner_labels,
                      outer_images, outer_labels) -> SolverStep:
        start_weights, start_non_trainable = pick(
            (learner.weights, learner.non_trainable), learner.next_start % self.initializations)
        with tf.GradientTape() as label_tape:
            label_tape.watch(inner_labels)
            weights, non_trainable, inner_loss = self.train_from_start(
                start_weights, start_non_trainable, inner_images, inner_labels)
            outer_loss, outer_error = self.solver._outer_loss(
                weights, non_trainable, outer_images, outer_labels)
        label_grad = label_tape.gradient(outer_loss, inner_labels)
        return SolverStep(inner_label_grad=label_grad,
                          learner=learner._replace(next_start=learner.next_start + 1),
                          outer_loss=outer_loss, outer_error=outer_error,
                          inner_loss=inner_loss)
