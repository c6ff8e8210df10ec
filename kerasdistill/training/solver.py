"""The interface between the outer loop and an inner solver.

The outer loop (meta_step.py) owns the soft labels and their optimizer; a solver
owns the online model ("learner") and says, for one inner and one outer batch,
how the outer loss changes with the inner batch's labels. Evaluation trains
fresh learners with the same solver, so a label set is always judged by the
kind of model it was learned for.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import tensorflow as tf


class SolverStep(NamedTuple):
    """What one solver step returns to the outer loop."""

    inner_label_grad: tf.Tensor  # d L_outer / d (inner batch's soft labels), n_i x C
    # the learner after its own update (step 5 of docs/method.md section 2a/2b)
    learner: Any
    outer_loss: tf.Tensor
    outer_error: tf.Tensor       # error rate on the outer batch: drives model resets
    inner_loss: tf.Tensor


class InnerSolver(abc.ABC):
    """An algorithm's inner problem. Subclasses are stateless apart from their
    fixed hyperparameters and model template: every tensor that changes during
    training travels in the learner state they return."""

    name: str
    # Inner batches each meta step hands to `meta_gradient`: 1 (images n_i x ..., labels
    # n_i x C), or K for a solver that unrolls K inner steps (K x n_i x ..., K x n_i x C).
    inner_batches_per_step: int = 1
    # Learners whose hypergradients each meta step averages: 1, or P for a pool
    # (learner_pool.py).
    learners_per_step: int = 1
    # Why the learner's steps since its last reset are no training run's step count, for
    # a solver whose labels must be validated at their own searched step count; None
    # for the paper's single learner, whose resets make that interval a step count.
    needs_searched_validation: str | None = None

    @abc.abstractmethod
    def init_learner(self, seed: int) -> Any:
        """A freshly initialised learner (model weights and optimizer state): an
        evaluation model, or the one a reset brings into meta-training."""

    def init_meta_learner(self, seed: int) -> Any:
        """What meta-training starts with. Default: one fresh learner."""
        return self.init_learner(seed)

    def identity_settings(self) -> dict:
        """What about this solver, beyond its name, changes the labels it learns: recorded
        in the run's checkpoint identity. Written only where it differs from the paper's
        single learner and single inner step, so identities recorded before these
        settings existed still match."""
        settings = {}
        if self.inner_batches_per_step > 1:
            settings["unroll_steps"] = self.inner_batches_per_step
        if self.learners_per_step > 1:
            settings["learner_pool"] = self.learners_per_step
        return settings

    def admit_fresh_learner(self, learner, fresh):
        """What meta-training goes on with when the reset rule (docs/method.md section 2c) brings in
        `fresh` (from `init_learner`). Default: `fresh` replaces `learner`."""
        del learner
        return fresh

    @abc.abstractmethod
    def meta_gradient(self, learner, inner_images, inner_labels, outer_images,
                      outer_labels) -> SolverStep:
        """One step of the algorithm, without the label update."""

    def after_label_update(self, step: SolverStep, learner, inner_images, inner_labels,
                           updated_inner_labels):
        """The learner for the next step, once the labels have been updated. Default:
        `step.learner` (second-order LD trains on the labels it saw, as the reference
        code does). LD RR's reference trains theta and s on the updated labels."""
        del learner, inner_images, inner_labels, updated_inner_labels
        return step.learner

    @abc.abstractmethod
    def train_step(self, learner, images, soft_labels):
        """One ordinary training step of an evaluation model; returns the learner."""

    @abc.abstractmethod
    def predict(self, learner, images) -> tf.Tensor:
        """Logits of a trained evaluation model."""

    def predicts_with_batch_statistics(self) -> bool:
        """True when `predict` normalises with the statistics of the batch it is given
        (batch norm as the authors run it), so the batches predicted on matter."""
        return False

    def model_stack(self):
        """A ModelStack that trains several evaluation models at once, or None when
        this solver's models train one at a time."""
        return None

    def train_step_stacked(self, stack, learners, images, soft_labels):
        """`train_step` for M models at once: every tensor of `learners` stacked on a
        leading axis of M (the Adam step count shared), images M x B x ..., labels
        M x B x C. Only for solvers whose `model_stack()` is not None."""
        raise NotImplementedError(f"{self.name} trains evaluation models one at a time")

    @abc.abstractmethod
    def recipe(self) -> dict:
        """How evaluation models of this solver train (JSON-ready), for the
        distilled set's metadata: the labels were selected for this recipe."""


class WrappedSolver(InnerSolver):
    """A solver that changes how another one's labels are learned (a pool of learners, a
    whole training run per meta step) but not how its evaluation models train or
    predict: those go to the wrapped solver."""

    def __init__(self, solver: InnerSolver):
        self.solver = solver
        self.name = solver.name

    @property
    def outer_precision(self):
        return self.solver.outer_precision

    def init_learner(self, seed: int):
        return self.solver.init_learner(seed)

    def train_step(self, learner, images, soft_labels):
        return self.solver.train_step(learner, images, soft_labels)

    def predict(self, learner, images) -> tf.Tensor:
        return self.solver.predict(learner, images)

    def predicts_with_batch_statistics(self) -> bool:
        return self.solver.predicts_with_batch_statistics()

    def model_stack(self):
        return self.solver.model_stack()

    def train_step_stacked(self, stack, learners, images, soft_labels):
        return self.solver.train_step_stacked(stack, learners, images, soft_labels)

    def recipe(self) -> dict:
        return self.solver.recipe()
