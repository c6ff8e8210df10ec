"""REPORT.md: every experiment found in an output folder, as tables of mean +- std test
accuracy over the test models, the paper's figures beside ours, wall times, commands and
pictures (a figure per experiment, and links to each run's own plots)."""

from __future__ import annotations

import io
import os
import textwrap

import numpy as np

from kerasdistill.files import read_json, write_bytes_atomic
from kerasdistill.hardware import device_summary
from kerasdistill.reproduction.plans import (BUDGETS, EXPERIMENTS, PAPER_NUMBERS,
                                             ExperimentPlan, experiment_plan)
from kerasdistill.reproduction.runner import STATUS_FILE, result_at, why_not_finished

REPORT_FILE = "REPORT.md"
FIGURES_DIR = "figures"


def _load(output_dir: str, folder: str):
    path = os.path.join(output_dir, folder, "results.json")
    if not os.path.exists(path):
        return None, None
    config_path = os.path.join(output_dir, folder, "config.json")
    config = read_json(config_path, "a run's config") if os.path.exists(config_path) else {}
    return read_json(path, "a run's results"), config


def _nothing_of_its_own(plan: ExperimentPlan, row: str, columns: list, cells: dict) -> bool:
    """True when none of the row's own runs has a result. Cells read from folders that
    another experiment owns (the cross-dataset table's within-dataset LD) do not make a
    row run, unless they are all the row has (the target-set-size row of the whole set)."""
    own_prefix = f"{plan.name}_{plan.budget}/"
    row_cells = [cells[row, c] for c in columns if (row, c) in cells]
    own = [(summary, run) for summary, run in row_cells if run.folder.startswith(own_prefix)]
    return all(summary is None for summary, _ in (own or row_cells))


def _cell(summary: dict | None) -> str:
    if summary is None:
        return "not run"
    text = (f"{100 * summary['test_accuracy_mean']:.2f} +- "
            f"{100 * summary['test_accuracy_std']:.2f}")
    if "seeds" in summary:
        text += f" ({summary['seeds']} of {summary['planned_seeds']} seeds)"
    return text


def combined_over_seeds(summaries: list) -> dict | None:
    """A cell planned as several runs (seeds): the mean of the finished runs' means, and
    the sample std between those means (one run: its std over its test models); None
    when none has finished."""
    finished = [s for s in summaries if s is not None]
    if not finished:
        return None
    means = np.array([s["test_accuracy_mean"] for s in finished])
    # The sample std (ddof = 1) between the seeds: 3 seeds, a population std would
    # understate it. One seed has no spread between seeds: its own std over test models.
    spread = float(means.std(ddof=1)) if len(finished) > 1 else finished[0]["test_accuracy_std"]
    return {"test_accuracy_mean": float(means.mean()), "test_accuracy_std": spread,
            "seeds": len(finished), "planned_seeds": len(summaries),
            "seed_means": means.tolist()}


def run_wall_seconds(results: dict) -> float:
    """A run's wall time over all the sessions it took. Runs written with a
    `session_seconds` entry already count every session in `total_seconds`. In older
    ones `total_seconds` is the last process's alone, while the distillation's
    meta-training and validation seconds are carried through checkpoints; so a resumed
    run there is the sum of its phases."""
    times = results.get("wall_times", {})
    if "session_seconds" in times:
        return times["total_seconds"]
    phases = sum(v for k, v in times.items() if k != "total_seconds")
    return max(times.get("total_seconds", 0.0), phases)


def plans_present(output_dir: str) -> list[ExperimentPlan]:
    """The plans with a result of their own in output_dir, in EXPERIMENTS order: a
    finished run in one of their own folders, or a transfer entry they read (a finished
    within-dataset run alone does not make the experiments sharing it present)."""
    present = []
    for budget in BUDGETS:
        for name in EXPERIMENTS:
            plan = experiment_plan(name, budget)
            own = f"{plan.name}_{plan.budget}/"
            for run in plan.runs:
                if run.result_key is None and not run.folder.startswith(own):
                    continue
                results, _ = _load(output_dir, run.folder)
                if results and result_at(results, run.result_key) is not None:
                    present.append(plan)
                    break
    return present


def write_report(output_dir: str, plans: list[ExperimentPlan] | None = None) -> str:
    """Writes <output_dir>/REPORT.md (and its figures) for `plans` (default: every plan
    with a finished run there); returns the report's path."""
    os.makedirs(output_dir, exist_ok=True)
    plans = plans_present(output_dir) if plans is None else plans
    status_path = os.path.join(output_dir, STATUS_FILE)
    failures = read_json(status_path, "the reproduce status") if os.path.exists(
        status_path) else {}
    lines = ["# Reproduction report", "",
             "Made by `python -m experiments.reproduce`; every number is the mean +- std of "
             "test accuracy (%) over fresh models trained on the run's labels, and comes from "
             "the `results.json` of the run folder named beside it. `paper`: the paper's "
             "figures confirmed in SPEC 5.", ""]
    if not plans:
        lines.append("No finished runs yet.")
    for plan in plans:
        lines += _plan_section(plan, output_dir, failures)
    path = os.path.join(output_dir, REPORT_FILE)
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def _plan_section(plan: ExperimentPlan, output_dir: str, failures: dict) -> list[str]:
    rows, columns, cells, planned = [], [], {}, {}
    loaded = {}
    not_the_plans = {}  # folder -> why its results.json is not this plan's run
    for run in plan.runs:
        if run.folder not in loaded:
            loaded[run.folder] = _load(output_dir, run.folder)
            if loaded[run.folder][0] is not None:
                # Another run's settings, epochs or test models are never tabled as
                # the plan's (missing transfer entries leave only their own cells empty).
                reason = why_not_finished(loaded[run.folder][0], run.config, keys=())
                if reason is not None:
                    not_the_plans[run.folder] = reason
        results, _ = loaded[run.folder]
        summary = (result_at(results, run.result_key)
                   if results and run.folder not in not_the_plans else None)
        rows.append(run.row) if run.row not in rows else None
        columns.append(run.column) if run.column not in columns else None
        planned.setdefault((run.row, run.column), []).append((summary, run))
    for key, entries in planned.items():
        # One run per cell, or several seeds of it (the beyond plan), combined.
        cells[key] = (entries[0][0] if len(entries) == 1 else
                      combined_over_seeds([summary for summary, _ in entries]), entries[0][1])
    paper_columns = [c for c in columns if any((plan.name, r, c) in PAPER_NUMBERS for r in rows)]
    header = ["", *columns, *[f"paper {c}" for c in paper_columns]]
    lines = [f"## {plan.title} (`{plan.name}`, budget `{plan.budget}`)", "", plan.description,
             "", f"    python -m experiments.reproduce --experiment={plan.name} "
             f"--budget={plan.budget} --data_dir=<data> --output_dir=<this folder>", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    pending = [row for row in rows if _nothing_of_its_own(plan, row, columns, cells)]
    for row in rows:
        if row in pending:
            continue
        values = [_cell(cells[row, c][0]) if (row, c) in cells else "" for c in columns]
        paper = [("%.1f +- %.1f" % PAPER_NUMBERS[plan.name, row, c])
                 if (plan.name, row, c) in PAPER_NUMBERS else "" for c in paper_columns]
        lines.append("| " + " | ".join([row, *values, *paper]) + " |")
    if pending:
        lines += ["", f"Not run yet: {', '.join(pending)} (the runs below say why)."]
    lines += resplit_captions(results for results, _ in loaded.values())
    lines += _fixed_labelling_verdicts(rows, cells)
    if plan.name == "beyond":
        lines += beyond_verdicts(rows, columns, {key: cell[0] for key, cell in cells.items()})
    # The figure shows the table's rows: a "not run yet" row would be an empty slot
    # (or one bar read from another experiment's folder).
    figure = _figure(plan, [row for row in rows if row not in pending], columns, cells,
                     output_dir)
    if figure:
        lines += ["", f"![{plan.title}]({figure})"]
    lines += ["", "<details><summary>Runs: folders, steps, wall times, machine, "
              "pictures</summary>", "",
              "| folder | method | train steps | wall time | device | pictures |",
              "|---|---|---|---|---|---|"]
    for folder, (results, config) in loaded.items():
        if results is None:
            reason = failures.get(folder, "not run yet")
            lines.append(f"| `{folder}` | not run: {reason[:160]} | | | | |")
            continue
        if folder in not_the_plans:
            lines.append(f"| `{folder}` | not the plan's run: {not_the_plans[folder]} | | | | |")
            continue
        seconds = run_wall_seconds(results)
        pictures = ", ".join(f"[{os.path.splitext(os.path.basename(p))[0]}]({folder}/{p})"
                             for p in results.get("plots", []))
        lines.append(f"| `{folder}` | {results.get('method')} | "
                     f"{results.get('num_train_steps')} | {seconds / 60:.1f} min | "
                     f"{device_summary(config.get('device', {}))} | {pictures} |")
    total = sum(run_wall_seconds(r) for folder, (r, _) in loaded.items()
                if r and folder not in not_the_plans)
    lines += ["", f"Wall time of the finished runs: {total / 3600:.2f} h.", "</details>", ""]
    return lines


def resplit_captions(all_results) -> list[str]:
    """One line per target whose splits a run cut from its test split (data/resplit.py),
    so that no table hides that its test images are not the official test split."""
    seen = {}
    for results in all_results:
        record = (results or {}).get("target_resplit")
        if record:
            seen.setdefault(record["origin"], record)
    lines = []
    for origin, record in sorted(seen.items()):
        sizes = record["sizes"]
        lines.append(f"Target re-split ({origin}): its {record['from_split']} split cut into "
                     f"{sizes['train']:,} training images (each run holds out "
                     f"{record['default_validation']:,} of them for validation by its seed, "
                     f"unless it sets its own number) and {sizes['test']:,} test images "
                     f"(stratified, seed {record['seed']}, the same for every run); these rows "
                     f"are tested on those {sizes['test']:,}, not on an official test split.")
    return ["", *lines] if lines else []


# The fixed labellings LD is judged against in a cross-dataset row (issue 9).
_FIXED_LABELLINGS = ("uniform", "class mapping")


def _fixed_labelling_verdicts(rows, cells) -> list[str]:
    """One plain sentence per row holding LD and both fixed labellings: does LD beat
    both, and the teacher's labels where the row has them, and by more than the two
    runs' spread (the sum of their stds)?"""
    lines = []
    for row in rows:
        summaries = {c: cells[row, c][0] for c in ("LD", *_FIXED_LABELLINGS)
                     if (row, c) in cells}
        if len(summaries) < 3 or any(s is None for s in summaries.values()):
            continue
        if (row, "teacher") in cells and cells[row, "teacher"][0] is not None:
            summaries["teacher"] = cells[row, "teacher"][0]
        ld = summaries.pop("LD")
        verdicts = []
        for name, other in summaries.items():
            gap = 100 * (ld["test_accuracy_mean"] - other["test_accuracy_mean"])
            spread = 100 * (ld["test_accuracy_std"] + other["test_accuracy_std"])
            verdicts.append(f"{'beats' if gap > 0 else 'does NOT beat'} {name} by "
                            f"{gap:+.2f} points ({'more' if abs(gap) > spread else 'less'} "
                            f"than the spread {spread:.2f})")
        lines.append(f"- {row}: LD {'; '.join(verdicts)}.")
    return ["", *lines] if lines else []


# Beyond-plan recipes: a column's title names its recipe after ", " (none: the paper's).
_BEYOND_RECIPES = {"": "teacher labels", "crop": "teacher labels, crop",
                   "ZCA": "teacher labels, ZCA"}


def _recipe_of(column: str) -> str:
    """The evaluation recipe a column's title names as one of its comma-separated
    parts ("" for the paper's)."""
    parts = [part.strip() for part in column.split(",")]
    return next((recipe for recipe in _BEYOND_RECIPES if recipe and recipe in parts), "")


def beyond_verdicts(rows, columns, summaries: dict) -> list[str]:
    """Per row of the beyond plan: the winning column, and for each recipe whether the
    best learned labels beat the teacher's under the same recipe by more than the
    spread (the sum of the two cells' stds between seeds)."""
    lines = []
    for row in rows:
        done = {c: summaries[row, c] for c in columns if summaries.get((row, c))}
        if not done:
            continue
        winner = max(done, key=lambda c: done[c]["test_accuracy_mean"])
        parts = [f"best: {winner}, {_cell(done[winner])}"]
        for recipe in _BEYOND_RECIPES:
            learned = {c: s for c, s in done.items() if "LD" in c and _recipe_of(c) == recipe}
            # The teacher held at its best: of its columns under this recipe (epochs as set,
            # or searched on validation), the better one.
            teachers = [c for c in done if c.startswith("teacher labels") and "LD" not in c
                        and _recipe_of(c) == recipe]
            if not teachers or not learned:
                continue
            teacher = max(teachers, key=lambda c: done[c]["test_accuracy_mean"])
            best = max(learned, key=lambda c: learned[c]["test_accuracy_mean"])
            gap = 100 * (learned[best]["test_accuracy_mean"] - done[teacher]["test_accuracy_mean"])
            spread = 100 * (learned[best]["test_accuracy_std"] + done[teacher]["test_accuracy_std"])
            verdict = ("beats" if gap > spread else "does not beat")
            parts.append(f"best learned labels{' with ' + recipe if recipe else ''} ({best}) "
                         f"{verdict} {teacher} beyond the spread: {gap:+.2f} points, spread "
                         f"{spread:.2f}")
        lines.append(f"- {row}: {'; '.join(parts)}.")
    return ["", *lines] if lines else []


def _figure(plan, rows, columns, cells, output_dir) -> str | None:
    """A line plot against the rows' numbers (n, target-set size), else grouped bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series = {c: [(cells[r, c][1].x, cells[r, c][0]) for r in rows
                  if (r, c) in cells and cells[r, c][0] is not None] for c in columns}
    if not any(series.values()):
        return None
    # A long legend (the beyond plan's columns) sits beside narrower axes: widen the figure.
    fig, ax = plt.subplots(figsize=(10 if len(columns) > 8 else 7, 4.2), layout="constrained")
    if plan.x_label and all(x is not None for points in series.values() for x, _ in points):
        def dodged(x, column):
            # Each series a little to the side of the others, so that equal means (LD and
            # label smoothing at n = 100, say) do not hide one another; the paper's point
            # sits where its column's does.
            shift = 0.02 * (columns.index(column) - (len(columns) - 1) / 2)
            return x * 10 ** shift if plan.log_x else x + shift * max(1, abs(x))

        for column, points in series.items():
            if points:
                ax.errorbar([dodged(x, column) for x, _ in points],
                            [100 * s["test_accuracy_mean"] for _, s in points],
                            yerr=[100 * s["test_accuracy_std"] for _, s in points],
                            marker="o", capsize=3, label=column)
        for (name, row, column), (mean, std) in PAPER_NUMBERS.items():
            if name == plan.name and row in rows and (row, column) in cells:
                ax.errorbar([dodged(cells[row, column][1].x, column)], [mean], yerr=[std],
                            marker="x",
                            color="black", capsize=3, linestyle="none",
                            label="paper" if not ax.get_legend_handles_labels()[1].count(
                                "paper") else None)
        ax.set_xlabel(plan.x_label)
        if plan.log_x:
            ax.set_xscale("log")
    else:
        # Only columns with a number get a bar (and a legend entry), each its own colour
        # (tab10 repeats after ten).
        columns = [c for c in columns if series[c]]
        width = 0.8 / max(len(columns), 1)
        colours = plt.cm.tab20(np.linspace(0, 1, 20))[:len(columns)] if len(columns) > 10 \
            else [None] * len(columns)
        for index, column in enumerate(columns):
            means = [100 * cells[r, column][0]["test_accuracy_mean"]
                     if (r, column) in cells and cells[r, column][0] else np.nan for r in rows]
            stds = [100 * cells[r, column][0]["test_accuracy_std"]
                    if (r, column) in cells and cells[r, column][0] else 0.0 for r in rows]
            ax.bar(np.arange(len(rows)) + index * width, means, width, yerr=stds, capsize=2,
                   label=column, color=colours[index])
        ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, rows, rotation=20, ha="right",
                      fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    # Over the figure, not the axes: beside a wide legend the axes' centre clips it.
    fig.suptitle(textwrap.fill(f"{plan.title} ({plan.budget} budget)", 60), fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside: never on a bar
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    relative = f"{FIGURES_DIR}/{plan.name}_{plan.budget}.png"
    os.makedirs(os.path.join(output_dir, FIGURES_DIR), exist_ok=True)
    write_bytes_atomic(os.path.join(output_dir, relative), buffer.getvalue())
    return relative
