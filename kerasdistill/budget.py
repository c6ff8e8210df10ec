"""The paper's budget table (docs/method.md section 3): what a run of n base examples on a target
gets when nothing else is asked for.

    n        10   20   50   100  200  500   other n
    n_i      10   10   25   50   50   50    min(n, max(10, n // 2)) up to 100, else 50
    epochs   400 up to n = 100, 800 above (Kuzushiji-49: 100 and 200)
    CIFAR-100 at n = 100: n_i = 100, 800 epochs
    architecture: LeNet for 28x28 greyscale targets, AlexNet for colour targets

The reference code's configuration files (experiment_configs/ of the authors'
repository) hold exactly these values for every (dataset, n) they ran.
"""

from __future__ import annotations

import dataclasses

from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.errors import DistillError

_INNER_BATCH = {10: 10, 20: 10, 50: 25, 100: 50, 200: 50, 500: 50}


@dataclasses.dataclass(frozen=True)
class ProtocolBudget:
    """The resolved defaults of one (target, n)."""

    architecture: str
    inner_batch_size: int
    epochs: int

    def describe(self) -> str:
        return (f"architecture {self.architecture}, inner batch {self.inner_batch_size}, "
                f"{self.epochs} epochs")


def default_architecture(target: str) -> str:
    """LeNet for greyscale targets (MNIST, KMNIST, Kuzushiji-49, ...), AlexNet for colour
    ones (CIFAR-10, CIFAR-100, CUB), as the paper's "cnn" option picks."""
    return "lenet" if get_dataset_spec(target).image_shape[-1] == 1 else "alexnet"


def default_inner_batch_size(target: str, num_base_examples: int) -> int:
    n = num_base_examples
    if n <= 0:
        raise DistillError(f"num_base_examples must be positive, got {n}")
    if target == "cifar100" and n == 100:
        return 100
    if n in _INNER_BATCH:
        return _INNER_BATCH[n]
    # Not in the paper: half the base set, at least 10 (all of a smaller set), at most 50
    # once the set exceeds 100 (the table's own pattern).
    return 50 if n > 100 else min(n, max(10, n // 2))


def default_epochs(target: str, num_base_examples: int) -> int:
    large = num_base_examples > 100 or target == "cifar100"
    if target == "kuzushiji49":
        return 200 if large else 100
    return 800 if large else 400


def protocol_budget(target: str, num_base_examples: int) -> ProtocolBudget:
    return ProtocolBudget(architecture=default_architecture(target),
                          inner_batch_size=default_inner_batch_size(target, num_base_examples),
                          epochs=default_epochs(target, num_base_examples))


def resolve_budget(target: str, num_base_examples: int, architecture: str = "auto",
                   inner_batch_size: int | None = None,
                   epochs: int | None = None) -> tuple[ProtocolBudget, dict]:
    """The budget of a run: what was asked, the table's value where nothing was ("auto"
    or None). Returns it and {setting: what was asked} for the settings the table filled."""
    table = protocol_budget(target, num_base_examples)
    asked = {"architecture": architecture, "inner_batch_size": inner_batch_size,
             "epochs": epochs}
    filled = {name: value for name, value in asked.items() if value in (None, "auto")}
    return ProtocolBudget(
        architecture=table.architecture if architecture == "auto" else architecture,
        inner_batch_size=table.inner_batch_size if inner_batch_size is None
        else inner_batch_size,
        epochs=table.epochs if epochs is None else epochs), filled
