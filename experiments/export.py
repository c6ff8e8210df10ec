r"""Write the distilled set (and the pictures) of a finished run, as TFDS or for Hugging Face.

  python -m experiments.export --model_dir=runs/mnist_n100_ld [--output_dir=DIR]
  python -m experiments.export --distilled=mnist/n100/horizon --format=hf --output_dir=DIR

A finished run has written its set into <model_dir>/distilled_set: export copies it
(elsewhere with --output_dir) and draws its pictures, reading no dataset. A run folder
without its set (made before runs kept one, or committed with config.json and
results.json only) has it rebuilt: the base images are read again from the source
dataset by their indices in its training split (--data_dir, default: the run's own)
and checked against the classes the run recorded for them.

--format=hf writes a Hugging Face `datasets` folder instead (Parquet shards and a dataset
card; kerasdistill/export/hf_format.py), of a run (--model_dir, whose own set is written
or copied first) or of any set (--distilled: a set's folder or a ready set's name). It
needs pyarrow: pip install "kerasdistill[hf]". --distilled with --plots_dir draws all the
set's pictures but the validation curve, which only a run holds.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from kerasdistill.config import ExperimentConfig

from . import entry_point
from .flags import define_config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished run (config.json and results.json).")
flags.DEFINE_string("distilled", None, "Instead of --model_dir: a distilled set's folder or "
                    "a ready set's name (python -m experiments.sets), written again in "
                    "--format to --output_dir.")
flags.DEFINE_enum("format", "tfds", ["tfds", "hf"], "tfds: the TFDS records, json and npz "
                  "(a set's own format); hf: Parquet shards and a dataset card for Hugging "
                  "Face datasets and pandas.")
flags.DEFINE_string("output_dir", None, "Where the set goes (default: <model_dir>/"
                    "distilled_set, or <model_dir>/distilled_set_hf with --format=hf; "
                    "required with --distilled).")
flags.DEFINE_string("plots_dir", None, "Where the pictures go (default: <model_dir>/plots; "
                    "'' for none; with --distilled, none unless given).")
# Where the data are, for a rebuild of a run's set: the same options as
# experiments.distill's (its default is the run's own --data_dir). A set given by
# --distilled holds its images, so these are refused with it rather than ignored.
define_config_flags((ExperimentConfig,), only=("data_dir", "download"))


def _run():
    from kerasdistill.errors import DistillError
    from kerasdistill.export.run_export import DISTILLED_DIR, export_run
    if bool(FLAGS.model_dir) == bool(FLAGS.distilled):
        raise DistillError("give one of --model_dir (a finished run to export) and "
                           "--distilled (a set's folder or a ready set's name)")
    if FLAGS.distilled:
        return _rewrite_set()
    hf = FLAGS.format == "hf"
    hf_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, DISTILLED_DIR + "_hf")
    if hf:
        _check_hf_output(hf_dir)
    # The run's own set is written (or copied) first; the hf folder is made from it.
    products = export_run(FLAGS.model_dir, None if hf else FLAGS.output_dir, FLAGS.data_dir,
                          FLAGS.plots_dir, FLAGS.download)
    analysis = products.label_analysis
    print(f"{len(products.distilled)} examples, {products.distilled.num_train_steps} training "
          f"steps; mean label entropy {analysis['entropy_summary']['mean']:.3f} nats; "
          f"plots: {', '.join(products.plots) or 'none'}", file=sys.stderr)
    if hf:
        print(_write_hf(products.distilled, hf_dir))
    else:
        print(FLAGS.output_dir or os.path.join(FLAGS.model_dir, DISTILLED_DIR))


def _check_hf_output(path):
    from kerasdistill.export.distilled_set import check_replaceable
    from kerasdistill.export.hf_format import FORMAT, require_pyarrow
    require_pyarrow()  # before a run's set is written, not after
    check_replaceable(path, formats=(FORMAT,))


def _write_hf(distilled, path) -> str:
    from kerasdistill.export.hf_format import write_hf_dataset
    return write_hf_dataset(distilled, path)


def _rewrite_set():
    from kerasdistill.errors import DistillError
    from kerasdistill.export.distilled_set import load_distilled, write_distilled_set
    from kerasdistill.export.run_export import check_plottable, write_set_plots
    from kerasdistill.files import check_creatable
    if not FLAGS.output_dir:
        raise DistillError("--distilled needs --output_dir: where the set goes")
    for name in ("data_dir", "download"):
        if FLAGS[name].present:
            raise DistillError(f"--{name} is for rebuilding a run's set (--model_dir); a set "
                               f"given by --distilled holds its own images")
    distilled = load_distilled(FLAGS.distilled)
    if FLAGS.plots_dir:  # both before anything is written
        check_creatable(FLAGS.plots_dir, "--plots_dir")
        check_plottable(distilled, FLAGS.distilled)
    if FLAGS.format == "hf":
        _check_hf_output(FLAGS.output_dir)
        written = _write_hf(distilled, FLAGS.output_dir)
    else:
        written = write_distilled_set(distilled, FLAGS.output_dir)
    if FLAGS.plots_dir:
        plots = write_set_plots(distilled, FLAGS.plots_dir)
        print(f"plots: {', '.join(plots) or 'none'}", file=sys.stderr)
    print(written)


main = entry_point(_run)


if __name__ == "__main__":
    app.run(main)
