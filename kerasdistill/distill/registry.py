"""Inner solvers by name (`--algorithm`)."""

from __future__ import annotations

from kerasdistill.distill.ridge_regression import RidgeRegressionSolver
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.distill.solver import InnerSolver
from kerasdistill.errors import DistillError
from kerasdistill.models.registry import ModelFactory

ALGORITHMS = ("second_order", "ridge_regression")


def build_solver(algorithm: str, factory: ModelFactory, outer_precision: str | None = None,
                 outer_splits: int = 2, hypergradient: str = "forward") -> InnerSolver:
    """Makes the solver for `algorithm`. `hypergradient` concerns the second-order
    solver only (the ridge-regression gradient is first-order by construction)."""
    if algorithm == "second_order":
        return UnrolledSGDSolver(factory, outer_precision=outer_precision,
                                 outer_splits=outer_splits, hypergradient=hypergradient)
    if algorithm == "ridge_regression":
        return RidgeRegressionSolver(factory, outer_precision=outer_precision,
                                     outer_splits=outer_splits)
    raise DistillError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
