r"""Run an experiment of the paper (docs/method.md section 5) and write its report.

  python -m experiments.reproduce --experiment=within_mnist --budget=paper \
      --data_dir=../shared/data --output_dir=results

Runs what is not finished yet in --output_dir (each run resumable; finished ones are
skipped), then writes REPORT.md there, covering every experiment with a finished run
in that folder. Experiments: within_mnist, within_cifar10, cifar100, cross_dataset,
architecture_transfer, optimizer_transfer, step_count, target_set_size (or all).
Budgets: paper (docs/method.md section 3), cpu (about an hour per experiment on 2 CPU cores), smoke
(tiny; what the test suite runs).
"""

from __future__ import annotations

import sys

from absl import app, flags

from kerasdistill.config import BUDGETS, ExperimentConfig

from . import entry_point
from .flags import define_config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment", None, "An experiment of docs/method.md section 5, or all.")
flags.DEFINE_enum("budget", "paper", list(BUDGETS),
                  "paper: the paper's; cpu: ~1 hour per experiment on 2 cores; smoke: tiny.")
flags.DEFINE_string("output_dir", "results", "Where the run folders and REPORT.md go.")
define_config_flags((ExperimentConfig,), only=("data_dir",))  # as experiments.distill's
flags.DEFINE_string("runs", None, "Only the run folders whose path below --output_dir matches "
                    "this glob, e.g. '*/n100_*'.")
flags.DEFINE_boolean("report_only", False, "Write REPORT.md from what is finished; run nothing.")
flags.DEFINE_boolean("print_pending", False,
                     "Run nothing: print one command per unfinished run of the plan, for a job "
                     "runner (GNU parallel, a SLURM array, a cluster's queue). Workers may share "
                     "--output_dir: each run is claimed by its folder's lock, a run another "
                     "worker holds is skipped, and the last worker to finish writes REPORT.md.")
flags.DEFINE_boolean("verbose", True, "Show progress.")


def _run():
    from kerasdistill.errors import DistillError
    from kerasdistill.reproduction.plans import EXPERIMENTS, experiment_plan
    from kerasdistill.reproduction.report import write_report
    from kerasdistill.reproduction.runner import (held_folders, one_run_command, pending_folders,
                                                  run_plan)

    if not FLAGS.experiment:
        raise DistillError(f"--experiment is required: one of {', '.join(EXPERIMENTS)}, or all")
    names = list(EXPERIMENTS) if FLAGS.experiment == "all" else [FLAGS.experiment]
    plans = [experiment_plan(name, FLAGS.budget) for name in names]  # refuses unknown ones
    if FLAGS.print_pending:
        for plan in plans:
            for folder in pending_folders(plan, FLAGS.output_dir, FLAGS.runs):
                print(one_run_command(plan, folder, FLAGS.output_dir, FLAGS.data_dir))
        return
    failed = 0
    if not FLAGS.report_only:
        for plan in plans:
            statuses = run_plan(plan, FLAGS.output_dir, FLAGS.data_dir, FLAGS.runs,
                                verbose=FLAGS.verbose)
            failed += sum(status.startswith("failed") for status in statuses.values())
            if FLAGS.verbose:
                for folder, status in statuses.items():
                    print(f"[{plan.name}/{plan.budget}] {folder}: {status}", file=sys.stderr)
    running = [folder for plan in plans for folder in held_folders(plan, FLAGS.output_dir)]
    if running and not FLAGS.report_only:
        # Another worker on this output folder is still running: the last one to finish
        # writes the report, once, over every run.
        print(f"{len(running)} run(s) still running in other processes ({', '.join(running[:3])}"
              f"{' ...' if len(running) > 3 else ''}): the last of them writes REPORT.md",
              file=sys.stderr)
    else:
        print(write_report(FLAGS.output_dir))
    # Runs whose data are absent are listed in the report with the reason; only faults
    # and bad settings fail the command.
    if failed:
        raise DistillError(f"{failed} run(s) could not run; REPORT.md and "
                           f"{FLAGS.output_dir}/reproduce_status.json say why")


main = entry_point(_run)


if __name__ == "__main__":
    app.run(main)
