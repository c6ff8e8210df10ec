r"""Train ordinary Keras models on a distilled set and measure them on the target's test split.

  python -m experiments.train --distilled=runs/mnist_n100_ld/distilled_set \
      --data_dir=../shared/data --output_json=runs/mnist_n100_ld_train/results.json

Defaults come from the set: its architecture, its recipe's optimizer and learning
rate, its step count and minibatch size; 20 models. Models train with
`model.compile` / `model.fit` (soft-label cross-entropy) and are measured with
`model.evaluate`. Sets learned for ridge-regression models train with the RR
recipe instead (or, with --model_kind=ordinary, as ordinary Keras models).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from kerasdistill.config import ExperimentConfig, TrainSettings

from . import entry_point
from .flags import config_values, define_config_flags

DATA_OPTIONS = ("data_dir", "download")

FLAGS = flags.FLAGS
flags.DEFINE_string("distilled", None, "A distilled set: a folder (a run's distilled_set/) "
                    "or a ready set's name (python -m experiments.sets lists them).")
flags.DEFINE_string("target", None, "The dataset whose test split the models are tested on "
                    "(default: the set's own target; give the path here when a set made on "
                    "your own file travelled to another folder or machine).")
# How the models train: TrainSettings' options (kerasdistill/config.py); where the data
# are: the same options as experiments.distill's.
define_config_flags((TrainSettings,))
define_config_flags((ExperimentConfig,), only=DATA_OPTIONS)
flags.DEFINE_string("output_json", None, "Write the results here. Named results.json, it "
                    "gets a config.json (the resolved settings) beside it.")
flags.DEFINE_string("tensorboard_dir", None, "Keras TensorBoard logs, one folder per model.")
flags.DEFINE_boolean("verbose", True, "Keras progress bars and a line per model.")


def _run():
    from kerasdistill.errors import DistillError
    from kerasdistill.evaluation.train_distilled import (load_test_split, resolve_train_settings,
                                                         train_on_distilled)
    from kerasdistill.export.distilled_set import load_distilled
    from kerasdistill.files import check_creatable
    from kerasdistill.version import __version__

    if not FLAGS.distilled:
        raise DistillError("--distilled is required: a distilled set folder, e.g. "
                           "runs/mnist_n100_ld/distilled_set, or a ready set's name, e.g. "
                           "mnist/n100/horizon")
    if FLAGS.output_json:
        _check_output_json(FLAGS.output_json)
    if FLAGS.tensorboard_dir:
        check_creatable(FLAGS.tensorboard_dir, "--tensorboard_dir")
    distilled = load_distilled(FLAGS.distilled)
    settings = resolve_train_settings(TrainSettings(**config_values(TrainSettings)), distilled)
    # The target's test split as the run's was made, prepared as the set's images were.
    test = load_test_split(distilled, FLAGS.target, FLAGS.data_dir, FLAGS.download)
    if FLAGS.verbose:
        print(f"Training {settings.repetitions} {settings.architecture} models "
              f"({settings.model_kind}, {settings.optimizer} lr {settings.learning_rate}, "
              f"{settings.steps} steps of {settings.batch_size}"
              f"{', augmented: ' + ' '.join(settings.augment) if settings.augment else ''}) "
              f"on {len(distilled)} distilled {test.dataset} images", file=sys.stderr)
    results = train_on_distilled(distilled, settings, test.images, test.labels,
                                 tensorboard_dir=FLAGS.tensorboard_dir,
                                 # Keras's live bar in a terminal, a line per model in a log.
                                 verbose=(1 if sys.stderr.isatty() else 2) if FLAGS.verbose
                                 else 0)
    results.update({
        "distilled": FLAGS.distilled, "target": test.dataset, "target_origin": test.origin,
        "distilled_run_test_accuracy_mean": distilled.metadata.get("test_accuracy_mean"),
        "distilled_run_test_accuracy_std": distilled.metadata.get("test_accuracy_std"),
        "kerasdistill_version": __version__})
    print(f"test accuracy {100 * results['test_accuracy_mean']:.2f} +- "
          f"{100 * results['test_accuracy_std']:.2f} % over {settings.repetitions} models "
          f"(the run's own test models: {100 * distilled.metadata['test_accuracy_mean']:.2f} "
          f"+- {100 * distilled.metadata['test_accuracy_std']:.2f} %)")
    if FLAGS.output_json:
        _write_output_json(FLAGS.output_json, results)


def _write_output_json(path: str, results: dict):
    """The results; named results.json, with the settings as config.json beside them."""
    from kerasdistill.files import prepare_output_dir, write_json_atomic
    from kerasdistill.version import __version__
    folder = os.path.dirname(path)
    if folder:
        prepare_output_dir(folder, "--output_json")
    write_json_atomic(path, results)
    if os.path.basename(path) == "results.json":
        write_json_atomic(os.path.join(folder, "config.json"), {
            "command": "experiments.train", "distilled": FLAGS.distilled,
            "data_dir": FLAGS.data_dir, **results["settings"],
            "kerasdistill_version": __version__})


def _check_output_json(path: str):
    """Refuses, before any training, an output that would replace something else."""
    from kerasdistill.errors import DistillError
    from kerasdistill.files import check_creatable, read_json
    check_creatable(os.path.dirname(path) or ".", "--output_json")
    if os.path.isdir(path):
        raise DistillError(f"--output_json={path} is a folder; name a file")
    config_path = os.path.join(os.path.dirname(path), "config.json")
    if os.path.basename(path) in ("results.json", "config.json") and \
            os.path.exists(config_path) and \
            read_json(config_path, "the folder's config").get("command") != "experiments.train":
        raise DistillError(f"--output_json={path} would overwrite the results of another kind "
                           f"of run ({config_path} was not written by experiments.train); "
                           f"name another folder")


main = entry_point(_run)


if __name__ == "__main__":
    app.run(main)
