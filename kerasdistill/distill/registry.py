"""Inner solvers by name (`--algorithm`)."""

from __future__ import annotations

from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.distill.solver import InnerSolver
from kerasdistill.errors import DistillError
from kerasdistill.models.registry import ModelFactory

ALGORITHMS = ("second_order",)


def build_solver(algorithm: str, factory: ModelFactory, **options) -> InnerSolver:
    """Makes the solver for `algorithm`; options are its keyword arguments."""
    if algorithm == "second_order":
        return UnrolledSGDSolver(factory, **options)
    raise DistillError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
