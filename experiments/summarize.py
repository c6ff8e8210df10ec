r"""Tabulates the results.json files of finished runs as Markdown.

  python -m experiments.summarize runs/mnist_n100_ld runs/mnist_n100_true ...
  python -m experiments.summarize --runs_glob='runs/mnist_*'
"""

from __future__ import annotations

import glob
import json
import os

from absl import app, flags

from kerasdistill.reproduction.report import run_wall_seconds

FLAGS = flags.FLAGS
flags.DEFINE_string("runs_glob", None, "Glob of run folders (instead of listing them).")


def _row(run_dir: str) -> str | None:
    results_path = os.path.join(run_dir, "results.json")
    if not os.path.exists(results_path):
        return None
    with open(results_path) as f:
        results = json.load(f)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    distill = config["distill"]
    source = config["source"] if config["source"] != config["target"] else ""
    distilled = config["baseline"] == "none"  # baselines have no epochs or outer pass
    epochs = distill["epochs"] if distilled else "-"
    precision = results.get("outer_precision", "") if distilled else "-"
    method = results["method"] if distilled else f"{results['method']} ({config['algorithm']})"
    return (f"| {os.path.basename(run_dir.rstrip('/'))} | {config['target']} | {source} | "
            f"{method} | {distill['num_base_examples']} | "
            f"{distill['inner_batch_size']} | {epochs} | "
            f"{100 * results['test_accuracy_mean']:.2f} +- "
            f"{100 * results['test_accuracy_std']:.2f} | {len(results['test_accuracies'])} | "
            f"{results['num_train_steps']} | {precision} | "
            f"{run_wall_seconds(results) / 60:.1f} |")


def main(argv):
    run_dirs = sorted(glob.glob(FLAGS.runs_glob)) if FLAGS.runs_glob else argv[1:]
    if not run_dirs:
        raise app.UsageError("name run folders, or give --runs_glob")
    print("| run | target | source | method | n | n_i | epochs | test accuracy % (mean +- std) "
          "| models | train steps | outer precision | wall time (min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run_dir in run_dirs:
        row = _row(run_dir)
        if row:
            print(row)


if __name__ == "__main__":
    app.run(main)
