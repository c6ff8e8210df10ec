"""Inner solvers by name (`--algorithm`)."""

from __future__ import annotations

from kerasdistill.config import ALGORITHMS, rule_horizon, rule_unroll_steps
from kerasdistill.distill.horizon import WholeRunSolver
from kerasdistill.distill.learner_pool import LearnerPool
from kerasdistill.distill.ridge_regression import RidgeRegressionSolver
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.errors import DistillError
from kerasdistill.models.registry import ModelFactory
from kerasdistill.training.solver import InnerSolver


def build_solver(algorithm: str, factory: ModelFactory, outer_precision: str | None = None,
                 outer_splits: int = 2, hypergradient: str = "forward",
                 unroll_steps: int = 1, learner_pool: int = 1,
                 horizon_steps: int = 0) -> InnerSolver:
    """Makes the solver for `algorithm`. `hypergradient` and `unroll_steps` concern the
    second-order solver only (the ridge-regression solve is in closed form: nothing
    to unroll, and its gradient is first-order by construction). `learner_pool` > 1
    wraps the solver in a LearnerPool of that many learners; `horizon_steps` > 0 in a
    WholeRunSolver, whose outer loss is taken after that many training steps of a fresh
    model (horizon.py)."""
    solver = _single_solver(algorithm, factory, outer_precision, outer_splits, hypergradient,
                            unroll_steps)
    if horizon_steps:
        rule_horizon(horizon_steps, algorithm, hypergradient, unroll_steps, learner_pool)
        return WholeRunSolver(solver, horizon_steps)
    return solver if learner_pool == 1 else LearnerPool(solver, learner_pool)


def _single_solver(algorithm, factory, outer_precision, outer_splits, hypergradient,
                   unroll_steps) -> InnerSolver:
    if algorithm == "second_order":
        return UnrolledSGDSolver(factory, outer_precision=outer_precision,
                                 outer_splits=outer_splits, hypergradient=hypergradient,
                                 unroll_steps=unroll_steps)
    if algorithm == "ridge_regression":
        rule_unroll_steps(unroll_steps, hypergradient, algorithm)
        return RidgeRegressionSolver(factory, outer_precision=outer_precision,
                                     outer_splits=outer_splits)
    raise DistillError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
