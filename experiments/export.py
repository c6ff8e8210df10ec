r"""Write the distilled set (and the pictures) of a finished run.

  python -m experiments.export --model_dir=runs/mnist_n100_ld [--output_dir=DIR]

A finished run has written its set into <model_dir>/distilled_set: export copies it
(elsewhere with --output_dir) and draws its pictures, reading no dataset. A run folder
without its set (made before runs kept one, or committed with config.json and
results.json only) has it rebuilt: the base images are read again from the source
dataset by their indices in its training split (--data_dir, default: the run's own)
and checked against the classes the run recorded for them.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments import entry_point
from experiments.flags import define_config_flags
from kerasdistill.config import ExperimentConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished run (config.json and results.json).")
flags.DEFINE_string("output_dir", None, "Where the set goes (default: <model_dir>/distilled_set).")
flags.DEFINE_string("plots_dir", None, "Where the pictures go (default: <model_dir>/plots; "
                    "'' for none).")
# Where the data are, for a rebuild: the same options as experiments.distill's (its
# default is the run's own --data_dir).
define_config_flags((ExperimentConfig,), only=("data_dir", "download"))


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
