r"""Run an experiment of the paper (SPEC 5) and write its report.

  python -m experiments.reproduce --experiment=within_mnist --budget=paper \
      --data_dir=../shared/data --output_dir=results

Runs what is not finished yet in --output_dir (each run resumable; finished ones are
skipped), then writes REPORT.md there, covering every experiment with a finished run
in that folder. Experiments: within_mnist, within_cifar10, cifar100, cross_dataset,
architecture_transfer, optimizer_transfer, step_count, target_set_size (or all).
Budgets: paper (SPEC 3), cpu (about an hour per experiment on 2 CPU cores), smoke
(tiny; what the test suite runs).
"""

from __future__ import annotations

from absl import app, flags

from experiments import entry_point

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment", None, "An experiment of SPEC 5, or all.")
flags.DEFINE_enum("budget", "paper", ["paper", "cpu", "smoke"],
                  "paper: the paper's; cpu: ~1 hour per experiment on 2 cores; smoke: tiny.")
flags.DEFINE_string("output_dir", "results", "Where the run folders and REPORT.md go.")
flags.DEFINE_string("data_dir", None, "Folder with <name>.npz files and/or TFDS data.")
flags.DEFINE_string("runs", None, "Only the run folders whose path below --output_dir matches "
                    "this glob, e.g. '*/n100_*'.")
flags.DEFINE_boolean("report_only", False, "Write REPORT.md from what is finished; run nothing.")
flags.DEFINE_boolean("verbose", True, "Show progress.")


def _run():
    from kerasdistill.errors import DistillError
    from kerasdistill.reproduction.plans import EXPERIMENTS, experiment_plan
    from kerasdistill.reproduction.report import write_report
    from kerasdistill.reproduction.runner import run_plan

    if not FLAGS.experiment:
        raise DistillError(f"--experiment is required: one of {', '.join(EXPERIMENTS)}, or all")
    names = list(EXPERIMENTS) if FLAGS.experiment == "all" else [FLAGS.experiment]
    plans = [experiment_plan(name, FLAGS.budget) for name in names]  # refuses unknown ones
    failed = 0
    if not FLAGS.report_only:
        for plan in plans:
            statuses = run_plan(plan, FLAGS.output_dir, FLAGS.data_dir, FLAGS.runs,
                                verbose=FLAGS.verbose)
            failed += sum(status.startswith("failed") for status in statuses.values())
    print(write_report(FLAGS.output_dir))
    if failed:
        raise DistillError(f"{failed} run(s) could not run; REPORT.md and "
                           f"{FLAGS.output_dir}/reproduce_status.json say why")


main = entry_point(_run)


if __name__ == "__main__":
    app.run(main)
