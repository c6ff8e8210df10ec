r"""Distil labels (or run a baseline) with the paper's protocol.

  python -m experiments.distill --target=mnist --num_base_examples=100 \
      --data_dir=../shared/data --model_dir=runs/mnist_n100

`--recipe=horizon` sets the whole-run horizon recipe's flags (kerasdistill/config.py's
RECIPES; any flag given wins). The architecture, inner batch size and epochs default to
the paper's budget table for the target and n (docs/method.md section 3,
kerasdistill/budget.py); the run prints them first.

Writes config.json and results.json into --model_dir, with a checkpoint that a
rerun of the same command resumes from, and TensorBoard summaries.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from kerasdistill.config import RecipeChoice

from . import entry_point
from .flags import apply_recipe, config_from_flags, define_config_flags

FLAGS = flags.FLAGS
# Every option of the run is defined once, in kerasdistill/config.py; these are its flags.
define_config_flags()
define_config_flags((RecipeChoice,))
flags.DEFINE_string("model_dir", None, "Output folder (config, results, checkpoint).")
flags.DEFINE_boolean("verbose", True, "Show progress.")


def _run():
    from kerasdistill.budget import resolve_budget
    from kerasdistill.errors import DistillError
    from kerasdistill.experiment import run_experiment

    if not FLAGS.model_dir:
        raise DistillError("--model_dir is required: it is where results are written")
    if FLAGS.distribute == "multi_worker":
        # The loop itself runs on several workers (tests/test_distribute.py), but this
        # command's files are not yet made for it: every worker would write the same
        # --model_dir, and a resumed run needs every worker to restore the chief's
        # checkpoint in step.
        raise DistillError("--distribute=multi_worker is not supported by experiments.distill "
                           "yet (every worker would write --model_dir, and resuming needs all "
                           "workers to restore the chief's checkpoint together); call "
                           "kerasdistill.distill.loop.distill_labels on each worker instead")
    recipe = apply_recipe()
    if FLAGS.verbose and recipe["settings"]:
        print(f"Recipe {recipe['name']}: " + ", ".join(
            f"--{name}={value}" for name, value in recipe["settings"].items()) +
            (f" (given instead: {', '.join(recipe['overridden'])})" if recipe["overridden"]
             else ""), file=sys.stderr)
    budget, filled = resolve_budget(FLAGS.target, FLAGS.num_base_examples, FLAGS.architecture,
                                    FLAGS.inner_batch_size, FLAGS.epochs)
    if FLAGS.verbose:
        defaulted = ", ".join(sorted(filled)) or "nothing"
        print(f"Budget: {budget.describe()} for {FLAGS.target} with n = "
              f"{FLAGS.num_base_examples} (from the paper's table: {defaulted})",
              file=sys.stderr)
    config = config_from_flags(architecture=budget.architecture,
                               inner_batch_size=budget.inner_batch_size, epochs=budget.epochs)
    run_experiment(config, FLAGS.model_dir, verbose=FLAGS.verbose,
                   requested={f"distill.{k}" if k != "architecture" else k: v
                              for k, v in filled.items()}, recipe=recipe)
    print(os.path.join(FLAGS.model_dir, "results.json"))


main = entry_point(_run)


if __name__ == "__main__":
    app.run(main)
