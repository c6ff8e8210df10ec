"""Ready distilled sets, shipped with the package: the project's best sets, by name.

    import kerasdistill
    distilled = kerasdistill.load_distilled("mnist/n100/horizon")

Each set is a `distilled_set/` folder exactly as `experiments.export` writes it from a
run folder committed under `results/` (a test checks the bytes), kept here as package
data: `<name>/` below this file. `catalogue.json` lists them in order, with what the set's
own `distilled_set.json` does not say: a title, the recipe by name, the budget the labels
were learned at, and the run folder they came from. A set's figures (its run's test
accuracy over its test models, the seed, the versions) are read from the set itself, so
each is written once (docs/distilled-sets.md, "Ready sets").

This module reads JSON only: the set loader (`export/distilled_set.py`) asks it where a
name's folder is.
"""

from __future__ import annotations

import dataclasses
import math
import os

from kerasdistill.errors import DistillError
from kerasdistill.files import read_json

CATALOGUE_FILE = "catalogue.json"
# A distilled set's record (recipe and provenance), named here, the lowest layer that
# reads it; export/distilled_set.py writes it.
METADATA_FILE = "distilled_set.json"
_HERE = os.path.dirname(os.path.abspath(__file__))
# The card check (`check_card`): models retrained from a set must score its card's mean
# within 3 standard errors of that mean (the card's std over sqrt(models)) plus this
# many points, which covers model.fit against the run's own trainer (0.03 points on
# MNIST n = 100; RESULTS.md, "Distilled sets outside the tool").
CARD_SLACK_POINTS = 1.0


@dataclasses.dataclass(frozen=True)
class Card:
    """One ready set: the catalogue's entry and its set's own record."""

    name: str            # e.g. "mnist/n100/ld": target, n, recipe
    title: str
    recipe: str          # "paper", or the recipe's name in kerasdistill/config.py
    budget: str          # "paper", or "cpu" (stated plainly in `budget_note`)
    budget_note: str
    run: str             # the committed run folder it was exported from, e.g. "results/..."
    path: str            # the set's folder in the installed package
    metadata: dict       # its distilled_set.json

    @property
    def accuracy_mean(self) -> float:
        """The run's test accuracy, in %, over `models` fresh models."""
        return 100 * float(self.metadata["test_accuracy_mean"])

    @property
    def accuracy_std(self) -> float:
        return 100 * float(self.metadata["test_accuracy_std"])

    @property
    def models(self) -> int:
        return int(self.metadata["test_repetitions"])

    @property
    def seed(self) -> int:
        return int(self.metadata["seed"])

    @property
    def dataset(self) -> str:
        source, target = self.metadata["source"], self.metadata["target"]
        return target if source == target else f"{source} -> {target}"

    @property
    def method(self) -> str:
        return self.metadata["method"]

    @property
    def size(self) -> int:
        return int(self.metadata["num_examples"])

    def tolerance(self, models: int) -> float:
        """How far, in points, the mean of `models` retrained models may be from the card's."""
        return 3 * self.accuracy_std / math.sqrt(models) + CARD_SLACK_POINTS

    def describe(self) -> str:
        return (f"{self.name}: {self.title}; {self.size} images of {self.dataset}; "
                f"{self.accuracy_mean:.2f} +- {self.accuracy_std:.2f} % over {self.models} "
                f"models (seed {self.seed}, {self.budget} budget)")


def entries() -> list:
    """The catalogue's entries as written (catalogue.json's "sets")."""
    catalogue = read_json(os.path.join(_HERE, CATALOGUE_FILE), "the ready sets' catalogue")
    return catalogue["sets"]


def set_folder(name: str) -> str:
    """Where the ready set `name` is (or, for --build, goes) in the package."""
    return os.path.join(_HERE, *name.split("/"))


def _card(entry: dict) -> Card:
    path = set_folder(entry["name"])
    metadata = read_json(os.path.join(path, METADATA_FILE), f"the ready set {entry['name']}")
    return Card(name=entry["name"], title=entry["title"], recipe=entry["recipe"],
                budget=entry["budget"], budget_note=entry["budget_note"], run=entry["run"],
                path=path, metadata=metadata)


def catalogue() -> tuple:
    """Every ready set's Card, in the catalogue's order."""
    return tuple(_card(entry) for entry in entries())


def set_names() -> tuple:
    return tuple(entry["name"] for entry in entries())


def find_set(name: str) -> Card:
    """The ready set called `name`; DistillError listing the known names otherwise."""
    for entry in entries():
        if entry["name"] == name:
            return _card(entry)  # only this set's files are read
    raise DistillError(f"{name} is not a folder nor a ready set's name (expected a distilled "
                       f"set: a run's <model_dir>/distilled_set, or one of "
                       f"{', '.join(set_names())}; python -m experiments.sets lists them)")


def distilled_set_folder(name_or_path: str) -> str:
    """The folder a distilled set is read from: `name_or_path` itself when it exists
    (a folder of that name wins over a ready set's name), else the ready set of that name."""
    if os.path.exists(name_or_path):
        return name_or_path
    return find_set(name_or_path).path


def check_card(card: Card, accuracies) -> float:
    """Raises DistillError unless the mean of `accuracies` (fractions, one per model
    retrained from the set) is within `card.tolerance` of the card's accuracy. Returns
    that mean in %."""
    if not len(accuracies):
        raise DistillError("check_card needs the accuracy of at least one model")
    mean = 100 * sum(accuracies) / len(accuracies)
    tolerance = card.tolerance(len(accuracies))
    if abs(mean - card.accuracy_mean) > tolerance:
        raise DistillError(f"{card.name}: {len(accuracies)} retrained models score "
                           f"{mean:.2f} %, the card says {card.accuracy_mean:.2f} +- "
                           f"{card.accuracy_std:.2f} (tolerance {tolerance:.2f} points)")
    return mean
