r"""Write the distilled set (and the pictures) of a finished run.

  python -m experiments.export --model_dir=runs/mnist_n100_ld [--output_dir=DIR]

For runs made before distilled sets existed, or to write one elsewhere. The base
images are rebuilt from the source dataset by their indices in its official
train split (`--data_dir`, default: the run's own), and checked against the
classes the run recorded for them.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments import entry_point

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished run (config.json and results.json).")
flags.DEFINE_string("output_dir", None, "Where the set goes (default: <model_dir>/distilled_set).")
flags.DEFINE_string("data_dir", None, "Folder with the source dataset (default: the run's).")
flags.DEFINE_string("plots_dir", None, "Where the pictures go (default: <model_dir>/plots; "
                    "'' for none).")
flags.DEFINE_boolean("download", False, "Let tensorflow-datasets download missing data.")


def _run():
    from kerasdistill.errors import DistillError
    from kerasdistill.export.run_export import DISTILLED_DIR, export_run
    if not FLAGS.model_dir:
        raise DistillError("--model_dir is required: the finished run to export")
    products = export_run(FLAGS.model_dir, FLAGS.output_dir, FLAGS.data_dir, FLAGS.plots_dir,
                          FLAGS.download)
    analysis = products.label_analysis
    print(f"{len(products.distilled)} examples, {products.distilled.num_train_steps} training "
          f"steps; mean label entropy {analysis['entropy_summary']['mean']:.3f} nats; "
          f"plots: {', '.join(products.plots) or 'none'}", file=sys.stderr)
    print(FLAGS.output_dir or os.path.join(FLAGS.model_dir, DISTILLED_DIR))


main = entry_point(_run)


if __name__ == "__main__":
    app.run(main)
