"""A pool of learners at different stages of training (issue 13, item 2).

The paper's meta step takes its hypergradient from one online learner, so each step
improves the labels for wherever that learner happens to be in its training run.
A pool of P learners averages the hypergradients of P models on the same inner and
outer batches, and a reset (docs/method.md section 2c) replaces only the pool's oldest member, so
the members are spread over the stages of training: once the first P - 1 resets have
happened, the pool always holds a fresh model, one trained for about one reset
interval, one for about two, and so on. All P start fresh, on their own seeds.

The pool is an InnerSolver wrapped around another one, so the one outer loop runs
it unchanged: meta-training starts from `init_meta_learner` (the P members, stacked
on a leading axis), the reset rule watches the pool's mean outer error and hands its
fresh learner to `admit_fresh_learner`. Evaluation models are the wrapped solver's
own (one model each): a pool changes how labels are learned, not how they are used.
Cost: P times the wrapped solver's meta step (its graph is repeated P times).

Because a member lives about P reset intervals, the interval between resets is not
a training run's length; the pool therefore needs each validation point to search
its labels' step count (`validation_steps="search"` in ExperimentConfig).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from kerasdistill.errors import DistillError
from kerasdistill.seeding import LEARNER_POOL, derive_seed
from kerasdistill.training.learner import stack_nests
from kerasdistill.training.solver import InnerSolver, SolverStep, WrappedSolver


class PoolLearner(NamedTuple):
    """The pool's members, every tensor stacked on a leading axis of P, and which
    member the next reset replaces."""

    members: Any
    oldest: tf.Tensor  # int32 scalar


def member(members, index: int):
    """Member `index` (a Python int) of a stacked nest."""
    return tf.nest.map_structure(lambda t: t[index], members)


class LearnerPool(WrappedSolver):
    """`size` learners of `solver`, their label hypergradients averaged each meta step.

    Example:
        solver = LearnerPool(UnrolledSGDSolver(factory), size=4)
        state = init_meta_state(solver, labels, seed=0)   # 4 fresh LeNets
    """

    needs_searched_validation = ("a pool's members outlive the interval between resets, so "
                                 "that interval is not a training run's step count")

    def __init__(self, solver: InnerSolver, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise DistillError(f"a learner pool needs at least 2 learners, got {size!r} "
                               f"(1 is the paper's single learner: no pool)")
        if solver.learners_per_step != 1 or isinstance(solver, WrappedSolver):
            raise DistillError("a learner pool's members must be single learners")
        super().__init__(solver)
        self.size = size
        self.inner_batches_per_step = solver.inner_batches_per_step
        self.learners_per_step = size

    def init_meta_learner(self, seed: int) -> PoolLearner:
        # Member 0 is the learner a run without a pool would start with.
        seeds = [seed] + [derive_seed(seed, LEARNER_POOL, j) for j in range(1, self.size)]
        return PoolLearner(stack_nests([self.solver.init_learner(s) for s in seeds]),
                           tf.constant(0, tf.int32))

    def admit_fresh_learner(self, learner: PoolLearner, fresh) -> PoolLearner:
        members = tf.nest.map_structure(
            lambda stacked, new: tf.tensor_scatter_nd_update(
                stacked, [[learner.oldest]], tf.expand_dims(tf.cast(new, stacked.dtype), 0)),
            learner.members, fresh)
        return PoolLearner(members, (learner.oldest + 1) % self.size)

    def meta_gradient(self, learner: PoolLearner, inner_images, inner_labels, outer_images,
                      outer_labels) -> SolverStep:
        steps = [self.solver.meta_gradient(member(learner.members, j), inner_images,
                                           inner_labels, outer_images, outer_labels)
                 for j in range(self.size)]

        def mean(field):
            return tf.add_n([getattr(step, field) for step in steps]) / float(self.size)

        # The members' own steps travel in `learner` for after_label_update.
        return SolverStep(inner_label_grad=mean("inner_label_grad"),
                          learner=(tuple(steps), learner.oldest),
                          outer_loss=mean("outer_loss"), outer_error=mean("outer_error"),
                          inner_loss=mean("inner_loss"))

    def after_label_update(self, step: SolverStep, learner: PoolLearner, inner_images,
                           inner_labels, updated_inner_labels) -> PoolLearner:
        member_steps, oldest = step.learner
        return PoolLearner(stack_nests([
            self.solver.after_label_update(member_step, member(learner.members, j),
                                           inner_images, inner_labels, updated_inner_labels)
            for j, member_step in enumerate(member_steps)]), oldest)
