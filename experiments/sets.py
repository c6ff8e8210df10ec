r"""The ready distilled sets shipped with kerasdistill: list them, show one's card, check them.

  python -m experiments.sets                       # the catalogue as a table
  python -m experiments.sets --name=mnist/n100/ld  # one set's whole card
  python -m experiments.train --distilled=mnist/n100/horizon --data_dir=../shared/data

A ready set is used by name wherever a set's folder is taken: `load_distilled(NAME)`,
`experiments.train --distilled=NAME`. For maintainers, from the checkout (they read the
committed run folders under results/ and the data):

  python -m experiments.sets --check --data_dir=../shared/data   # retrain, compare with cards
  python -m experiments.sets --build --data_dir=../shared/data   # export every set again
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from kerasdistill.config import ExperimentConfig

from . import entry_point
from .flags import define_config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("name", None, "Show this set's whole card.")
flags.DEFINE_boolean("check", False, "Retrain --repetitions models on every set (or --name) "
                     "and require each card's accuracy within its tolerance.")
flags.DEFINE_integer("repetitions", 3, "Models per set for --check.", lower_bound=1)
flags.DEFINE_boolean("build", False, "Export every set again from its run folder (the "
                     "checkout's results/) into the package's kerasdistill/sets/.")
define_config_flags((ExperimentConfig,), only=("data_dir", "download"))


def table(cards) -> str:
    """The catalogue as a Markdown table."""
    lines = ["| name | dataset | images | method | recipe | budget | test accuracy (%) | "
             "seed |", "|---|---|---|---|---|---|---|---|"]
    for card in cards:
        lines.append(f"| {card.name} | {card.dataset} | {card.size} | {card.method} | "
                     f"{card.recipe} | {card.budget} | {card.accuracy_mean:.2f} +- "
                     f"{card.accuracy_std:.2f} ({card.models} models) | {card.seed} |")
    return "\n".join(lines)


def card_text(card) -> str:
    """Everything a set's card says."""
    metadata = card.metadata
    recipe = metadata["recipe"]
    return "\n".join([
        f"{card.name}: {card.title}",
        f"  dataset: {card.dataset} ({card.size} images; classes: "
        f"{', '.join(map(str, metadata['class_names']))})",
        f"  method: {card.method}; recipe: {card.recipe}; architecture: "
        f"{metadata['architecture']}",
        f"  budget: {card.budget_note}",
        f"  test accuracy: {card.accuracy_mean:.2f} +- {card.accuracy_std:.2f} % over "
        f"{card.models} fresh models (the run's own), seed {card.seed}",
        f"  training recipe: {recipe['optimizer']} lr {recipe['learning_rate']}, "
        f"{recipe['num_train_steps']} steps of {recipe['batch_size']}, augment "
        f"{recipe.get('augment') or 'none'}, whitening {recipe.get('whitening', 'none')}",
        f"  normalisation: mean {metadata['mean']}, std {metadata['std']}",
        f"  made by: run {card.run} (kerasdistill {metadata.get('run_kerasdistill_version')}), "
        f"exported by kerasdistill {metadata.get('kerasdistill_version')}",
        f"  files: {card.path}"])


def _check(cards):
    from kerasdistill.evaluation.train_distilled import check_ready_set
    for card in cards:
        mean = check_ready_set(card, FLAGS.repetitions, FLAGS.data_dir, FLAGS.download)
        print(f"{card.name}: {FLAGS.repetitions} models {mean:.2f} %, card "
              f"{card.accuracy_mean:.2f} +- {card.accuracy_std:.2f}: within "
              f"{card.tolerance(FLAGS.repetitions):.2f} points")


def _build():
    import shutil

    import tempfile

    from kerasdistill import sets
    from kerasdistill.errors import DistillError
    from kerasdistill.export.run_export import export_run
    missing = [entry["run"] for entry in sets.entries() if not os.path.isdir(entry["run"])]
    if missing:
        raise DistillError(f"--build reads the committed run folders, and "
                           f"{', '.join(missing)} are not here (run it from the checkout's "
                           f"root)")
    # Every set exported first, then moved in: a failure leaves the shipped sets as they were.
    with tempfile.TemporaryDirectory() as staging:
        for index, entry in enumerate(sets.entries()):
            export_run(entry["run"], os.path.join(staging, str(index)), FLAGS.data_dir,
                       plots_dir="", download=FLAGS.download)
            print(f"{entry['name']}: exported from {entry['run']}", file=sys.stderr)
        for index, entry in enumerate(sets.entries()):
            folder = sets.set_folder(entry["name"])
            if os.path.exists(folder):
                shutil.rmtree(folder)
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            shutil.move(os.path.join(staging, str(index)), folder)


def _run():
    from kerasdistill.sets import catalogue, find_set
    if FLAGS.build:
        _build()
    cards = (find_set(FLAGS.name),) if FLAGS.name else catalogue()
    if FLAGS.check:
        _check(cards)
    elif FLAGS.name:
        print(card_text(cards[0]))
    else:
        print(table(cards))


main = entry_point(_run)


if __name__ == "__main__":
    app.run(main)
