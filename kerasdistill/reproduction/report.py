"""REPORT.md: every experiment found in an output folder, as tables of mean +- std test
accuracy over the test models, the paper's figures beside ours, wall times, commands and
pictures (a figure per experiment, and links to each run's own plots)."""

from __future__ import annotations

import io
import os
import re
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
             "figures confirmed in docs/method.md section 5.", ""]
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
    title = without_issue_numbers(plan.title)
    lines = [f"## {title} (`{plan.name}`, budget `{plan.budget}`)", "",
             without_issue_numbers(plan.description),
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
    figure, caption = _figure(plan, [row for row in rows if row not in pending], columns,
                              cells, output_dir)
    if figure:
        lines += ["", f"![{title}]({figure})", "", caption]
    lines += ["", "<details><summary>Runs: folders, steps, wall times, machine, "
              "pictures</summary>", "",
              "| folder | method | train steps | wall time | device | pictures |",
              "|---|---|---|---|---|---|"]
    for folder, (results, config) in loaded.items():
        if results is None:
            reason = without_issue_numbers(failures.get(folder, "not run yet"))
            lines.append(f"| `{folder}` | not run: {reason[:160]} | | | | |")
            continue
        if folder in not_the_plans:
            lines.append(f"| `{folder}` | not the plan's run: "
                         f"{without_issue_numbers(not_the_plans[folder])} | | | | |")
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


# The fixed labellings LD is judged against in a cross-dataset row.
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


# ---------------------------------------------------------------------------------------
# Figures: one per section, showing the comparison the section is about. Few colours, the
# same colour for the same labelling in every figure (Okabe and Ito's colour-blind-safe
# palette), fonts legible at the ~900 pixels REPORT.md shows them at, std error bars, the
# paper's number (a black cross) where docs/method.md section 5 has one. Every other number is
# in the table.

_BLUE, _ORANGE, _SKY, _GREEN = "#0072B2", "#E69F00", "#56B4E9", "#009E73"
_VERMILLION, _PURPLE, _YELLOW = "#D55E00", "#CC79A7", "#F0E442"
_LIGHT_GREY, _DARK_GREY, _GREY = "#BBBBBB", "#555555", "#999999"
# A labelling's colour, wherever it appears.
_COLOURS = {"LD": _BLUE, "learned labels": _BLUE, "LD RR": _ORANGE, "teacher": _VERMILLION,
            "true labels": _GREEN, "label smoothing": _PURPLE, "uniform": _LIGHT_GREY,
            "class mapping": _DARK_GREY, "within-dataset LD": _SKY}
# Columns with no colour of their own take these in turn.
_PALETTE = (_BLUE, _ORANGE, _GREEN, _VERMILLION, _PURPLE, _SKY, _DARK_GREY, _YELLOW)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# The most legend entries a figure may have (the cross-dataset figure's six columns).
MAX_LEGEND_ENTRIES = 6
_WIDTH_INCHES, _DPI = 8.0, 110  # 880 pixels: REPORT.md's width on GitHub, unscaled
_STYLE = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10,
          "xtick.labelsize": 9.5, "ytick.labelsize": 9.5, "legend.fontsize": 9.5,
          "axes.spines.top": False, "axes.spines.right": False}
_ISSUE = r"issues?\s*#?\s*\d+"


def without_issue_numbers(text: str) -> str:
    """Report text without the project's issue numbers: a parenthesis that only cites
    issues goes ("... teacher's (issue 13)" -> "... teacher's"), and any other mention
    ("issue 26's rows") says what it is ("this project's own study's rows")."""
    text = re.sub(rf"\s*\(\s*{_ISSUE}(?:\s*,\s*item\s*\d+)?\s*\)", "", text, flags=re.I)
    text = re.sub(rf"\b{_ISSUE}(?:\s*,\s*item\s*\d+)?", "this project's own study", text,
                  flags=re.I)
    return text


def _accuracy(summary) -> tuple[float, float]:
    return 100 * summary["test_accuracy_mean"], 100 * summary["test_accuracy_std"]


def _seeds_note(summary) -> str:
    """" (2 of 3 seeds)" for a cell some of whose seeds have not finished."""
    if summary and "seeds" in summary and summary["seeds"] < summary["planned_seeds"]:
        return f" ({summary['seeds']} of {summary['planned_seeds']} seeds)"
    return ""


def _colours_for(names) -> dict:
    """Each name its labelling's colour, the others the palette's colours in turn."""
    spare = [c for c in _PALETTE if c not in {_COLOURS.get(n) for n in names}]
    return {n: _COLOURS[n] if n in _COLOURS else spare.pop(0) if spare else _GREY
            for n in names}


def beyond_figure_bars(rows, columns, summaries: dict) -> dict:
    """The beyond figure's bars: per row, the paper's LD, the teacher's labels and the best
    learned labels, as {row: [(role, column, summary), ...]} in that order. The best
    learned labels: the LD column (other than the paper's) with the highest mean; the
    teacher's labels: the better of the teacher's columns under that column's recipe
    (crop, ZCA or none), as the verdicts compare them (else under the paper's recipe).
    Rows with no learned labels yet (no comparison to show) are left out; a missing cell
    leaves its bar out."""
    paper = next((c for c in columns if "(paper)" in c), None)
    chosen = {}
    for row in rows:
        done = {c: summaries[row, c] for c in columns if summaries.get((row, c))}
        learned = {c: s for c, s in done.items() if "LD" in c and c != paper}
        if paper not in done and not learned:
            continue
        best = max(learned, key=lambda c: learned[c]["test_accuracy_mean"]) if learned else None
        teachers = [c for c in done if c.startswith("teacher labels") and "LD" not in c]
        recipe = _recipe_of(best) if best else ""
        fair = ([c for c in teachers if _recipe_of(c) == recipe]
                or [c for c in teachers if _recipe_of(c) == ""] or teachers)
        teacher = max(fair, key=lambda c: done[c]["test_accuracy_mean"]) if fair else None
        chosen[row] = [(role, column, done[column]) for role, column in (
            ("the paper's LD", paper), ("the teacher's labels", teacher),
            ("the best learned labels", best)) if column in done]
    return chosen


_BEYOND_ROLE_COLOURS = {"the paper's LD": _GREY, "the teacher's labels": _VERMILLION,
                        "the best learned labels": _BLUE}


def _beyond_figure(plt, rows, columns, cells):
    bars = beyond_figure_bars(rows, columns, {key: cell[0] for key, cell in cells.items()})
    if not bars:
        return None, ""
    fig, axes = plt.subplots(len(bars), 1, sharex=True, squeeze=False, layout="constrained",
                             figsize=(_WIDTH_INCHES, 0.9 + 1.35 * len(bars)))
    for ax, (row, chosen) in zip(axes[:, 0], bars.items()):
        slots = list(range(len(chosen)))[::-1]  # the first role on top
        for y, (role, column, summary) in zip(slots, chosen):
            mean, std = _accuracy(summary)
            ax.barh(y, mean, 0.72, xerr=std, capsize=3, color=_BEYOND_ROLE_COLOURS[role],
                    edgecolor="black", linewidth=0.5, error_kw={"elinewidth": 1.2})
            text = f"{mean:.1f} ± {std:.1f}{_seeds_note(summary)}"
            inside = mean > 30
            ax.text(1.5 if inside else mean + std + 1.5, y, text, va="center", fontsize=9,
                    color="white" if inside and role != "the paper's LD" else "black",
                    fontweight="bold" if role == "the best learned labels" else None)
        ax.set_yticks(slots, [textwrap.fill(column, 42) for _, column, _ in chosen],
                      fontsize=8.5)
        ax.set_ylim(-0.6, len(chosen) - 0.4)
        ax.set_title(row, loc="left", fontweight="bold")
        ax.grid(axis="x", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[-1, 0].set_xlim(0, 100)
    axes[-1, 0].set_xlabel("test accuracy (%), mean ± std between seeds")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, ec="black", lw=0.5)
               for c in _BEYOND_ROLE_COLOURS.values()]
    fig.legend(handles, list(_BEYOND_ROLE_COLOURS), loc="outside lower center", ncols=3)
    left_out = [row for row in rows if row not in bars]
    caption = ("*Figure:* per row, the paper's LD (uniform-init), the teacher's labels "
               "(the better of the teacher's columns under the recipe of the row's best "
               "learned labels: crop, ZCA or none) and the best learned labels of the row, "
               "each named beside its bar; error bars: std between seeds; every other "
               "column is in the table.")
    if left_out:
        caption += f" Not drawn (no learned labels yet): {', '.join(left_out)}."
    return fig, caption


def _errorbar_series(ax, points, label, colour, marker, dashed=False, hollow=False):
    """One series of (x, summary) points as a line with std error bars."""
    xs = [x for x, _ in points]
    means, stds = zip(*(_accuracy(s) for _, s in points))
    ax.errorbar(xs, means, yerr=stds, label=label, color=colour, marker=marker,
                markersize=6.5, linewidth=2, capsize=3.5, elinewidth=1.3,
                linestyle="--" if dashed else "-",
                markerfacecolor="white" if hollow else colour, markeredgewidth=1.5)


def _dodge(x, index, count, log_x):
    """Each series a little to the side of the others, so that equal means do not hide
    one another."""
    shift = 0.015 * (index - (count - 1) / 2)
    return x * 10 ** shift if log_x else x + shift * max(1, abs(x))


def _paper_points(ax, plan, rows, cells, columns, log_x, index, count, first):
    """The paper's numbers of these columns: black crosses with their std."""
    drawn = False
    for (name, row, column), (mean, std) in PAPER_NUMBERS.items():
        if name == plan.name and row in rows and column in columns and (row, column) in cells:
            # Just left of the series it belongs to (index), so as not to hide its point.
            ax.errorbar([_dodge(cells[row, column][1].x, index - 1, count, log_x)], [mean],
                        yerr=[std], marker="X", markersize=9, color="black", capsize=4,
                        linestyle="none", zorder=5,
                        label="the paper's number" if first and not drawn else None)
            drawn = True
    return drawn


def _family(column):
    """A within-dataset column's model kind: LD (second-order) or LD RR."""
    return "LD RR" if column == "LD RR" or column.startswith("RR ") else "LD"


def _labelling(column):
    """A within-dataset column's labels: learned, or a baseline of the same images."""
    return "learned labels" if column in ("LD", "LD RR") else column.removeprefix("RR ")


_WITHIN_COLUMNS = frozenset(("LD", "LD RR", "true labels", "RR true labels", "label smoothing",
                             "RR label smoothing", "teacher", "RR teacher"))


def _within_figure(plt, plan, rows, cells, columns, series):
    """Test accuracy against n: LD's panel and LD RR's, in each the learned labels beside
    the same base images' true labels, label smoothing and teacher's labels (one colour
    each, the same in both panels)."""
    family, labelling = _family, _labelling
    families = [f for f in ("LD", "LD RR") if any(series[c] for c in columns if family(c) == f)]
    labellings = list(dict.fromkeys(labelling(c) for c in columns))
    colours = _colours_for(labellings)
    fig, axes = plt.subplots(1, len(families), sharey=True, squeeze=False,
                             layout="constrained", figsize=(_WIDTH_INCHES, 4.4))
    for ax, fam in zip(axes[0], families):
        own = [c for c in columns if family(c) == fam]
        for column in own:
            if series[column]:
                index = labellings.index(labelling(column))
                _errorbar_series(ax, [(_dodge(x, index, len(labellings), plan.log_x), s)
                                      for x, s in series[column]], labelling(column),
                                 colours[labelling(column)], _MARKERS[index])
        _paper_points(ax, plan, rows, cells, own, plan.log_x, 0, len(labellings),
                      first=fam == "LD")
        ax.set_title({"LD": "LD (second-order)", "LD RR": "LD RR (ridge regression)"}[fam])
        ax.set_xlabel(plan.x_label)
        _x_axis_at_rows(ax, plan, series)
        ax.grid(color="#e5e5e5", linewidth=0.8)
    axes[0, 0].set_ylabel("test accuracy (%)")
    _legend(fig, axes[0])
    return fig, ("*Figure:* test accuracy against n, each model kind in its panel; the "
                 "learned labels beside true labels, label smoothing and the teacher's labels "
                 "of the same base images; error bars: std over test models (over seeds "
                 "where a cell has several); black cross: the paper's number.")


def _x_axis_at_rows(ax, plan, series):
    """Ticks at the rows' own numbers (n = 10, 20, 50, ...), written plainly."""
    xs = sorted({x for points in series.values() for x, _ in points})
    if plan.log_x:
        ax.set_xscale("log")
        ax.minorticks_off()
    if xs:
        ax.set_xticks(xs, [f"{x:,.0f}" for x in xs])
    if len(xs) == 1:  # one row: its point in the middle, not at an edge
        ax.set_xlim(*((xs[0] / 2, xs[0] * 2) if plan.log_x else (xs[0] - 1, xs[0] + 1)))


def _legend(fig, axes):
    """One legend over the figure for every panel: each label once, in order."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        # As many columns as the widest entry allows in the figure's width (~7 pixels a
        # character, ~55 for the handle and gaps), the rows balanced.
        fits = max(1, int((_WIDTH_INCHES * _DPI - 40) // (7 * max(map(len, entries)) + 55)))
        rows = -(-len(entries) // fits)
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=-(-len(entries) // rows))


def _target_set_size_figure(plt, plan, rows, cells, columns, series):
    """Test accuracy against the target-set size: colour the method (LD, LD RR), line
    the base images' source (solid: MNIST's own, dashed: EMNIST letters')."""
    fig, ax = plt.subplots(layout="constrained", figsize=(_WIDTH_INCHES, 4.6))
    drawn = [c for c in columns if series[c]]
    for index, column in enumerate(drawn):
        method = column.split(",")[0]
        emnist = "EMNIST" in column
        label = column if emnist else f"{method}, MNIST base images"
        _errorbar_series(ax, [(_dodge(x, index, len(drawn), True), s)
                              for x, s in series[column]], label,
                         _COLOURS.get(method, _PALETTE[index]), "s" if emnist else "o",
                         dashed=emnist, hollow=emnist)
    _paper_points(ax, plan, rows, cells, columns, True, 0, len(drawn), first=True)
    ax.set_xlabel(plan.x_label + " (log scale)")
    _x_axis_at_rows(ax, plan, series)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(color="#e5e5e5", linewidth=0.8)
    _legend(fig, [ax])
    return fig, ("*Figure:* test accuracy against the number of target examples LD "
                 "learns from; colour: the method (LD, LD RR); solid line: MNIST base "
                 "images, dashed: EMNIST letters base images; error bars: std over test "
                 "models.")


def _step_count_figure(plt, plan, rows, cells, columns):
    """Test accuracy against the shift from the learned step count, one line per method."""
    fig, ax = plt.subplots(layout="constrained", figsize=(_WIDTH_INCHES, 4.2))
    offsets = {c: int(c.split()[0]) for c in columns}
    for index, row in enumerate(rows):
        points = [(offsets[c] + 1.2 * (index - (len(rows) - 1) / 2), cells[row, c][0])
                  for c in columns if (row, c) in cells and cells[row, c][0]]
        if points:
            _errorbar_series(ax, points, row, _COLOURS.get(row, _PALETTE[index]),
                             _MARKERS[index])
    ax.axvline(0, color="black", linestyle=":", linewidth=1.2)
    ax.annotate("the learned step count", (0, 1), xycoords=("data", "axes fraction"),
                xytext=(4, -4), textcoords="offset points", va="top", fontsize=9)
    ax.set_xticks(sorted(offsets.values()), [f"{o:+d}" for o in sorted(offsets.values())])
    ax.set_xlabel("steps added to the learned step count")
    ax.set_ylabel("test accuracy (%)")
    low, high = ax.get_ylim()
    if high - low < 4:  # a flat curve is drawn flat: at least 4 points of accuracy
        middle = (low + high) / 2
        ax.set_ylim(middle - 2, middle + 2)
    ax.grid(color="#e5e5e5", linewidth=0.8)
    _legend(fig, [ax])
    return fig, ("*Figure:* test accuracy of fresh models trained for the learned step "
                 "count shifted by the steps on the x axis; error bars: std over test "
                 "models.")


_OPTIMIZER_NAMES = {"sgd": "SGD", "sgd_momentum": "SGD with\nmomentum",
                    "keras_adam": "Adam\n(Keras)", "rmsprop": "RMSprop",
                    "protocol_adam": "the protocol's\nAdam"}


def _bars(plt, groups, series, value, colours, ylabel, group_names=None, height=4.4):
    """Vertical bars: a group per x position, a bar per series in it, std error bars, and
    each bar's mean written over it while the bars are wide enough to hold it."""
    fig, ax = plt.subplots(layout="constrained", figsize=(_WIDTH_INCHES, height))
    width = 0.8 / max(len(series), 1)
    label_bars = len(groups) * len(series) <= 18
    top = 0.0
    for index, name in enumerate(series):
        xs, means, stds = [], [], []
        for g, group in enumerate(groups):
            summary = value(group, name)
            if summary:
                mean, std = _accuracy(summary)
                xs.append(g + (index - (len(series) - 1) / 2) * width)
                means.append(mean)
                stds.append(std)
        if not xs:
            continue
        ax.bar(xs, means, width * 0.92, yerr=stds, capsize=3, label=name,
               color=colours[name], edgecolor="black", linewidth=0.5,
               error_kw={"elinewidth": 1.2})
        top = max(top, max(m + s for m, s in zip(means, stds)))
        if label_bars:
            for x, mean, std in zip(xs, means, stds):
                ax.text(x, mean + std + 1, f"{mean:.1f}", ha="center", va="bottom",
                        fontsize=8.5)
    names = group_names or {}
    ax.set_xticks(range(len(groups)), [names.get(g, textwrap.fill(g, 22)) for g in groups])
    ax.set_ylim(0, top + 9)  # room for the means written over the bars
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    _legend(fig, [ax])
    return fig


def _draw_figure(plan, rows, columns, cells):
    """The section's figure and the caption REPORT.md puts under it; (None, "") when no
    cell has a number."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series = {c: [(cells[r, c][1].x, cells[r, c][0]) for r in rows
                  if (r, c) in cells and cells[r, c][0] is not None] for c in columns}
    if not any(series.values()):
        return None, ""
    with plt.rc_context(_STYLE):
        fig, caption = _draw(plt, plan, rows, columns, cells, series)
        if fig is not None:
            fig.suptitle(f"{without_issue_numbers(plan.title)}, {plan.budget} budget",
                         fontsize=11, fontweight="bold")
    return fig, caption


def _draw(plt, plan, rows, columns, cells, series):
    def value(row, column):
        return cells[row, column][0] if (row, column) in cells else None

    with_x = plan.x_label and all(x is not None for points in series.values()
                                  for x, _ in points)
    if plan.name == "beyond":
        return _beyond_figure(plt, rows, columns, cells)
    if plan.name.startswith("within_") and with_x:
        return _within_figure(plt, plan, rows, cells, columns, series)
    if plan.name == "target_set_size" and with_x:
        return _target_set_size_figure(plt, plan, rows, cells, columns, series)
    if plan.name == "step_count":
        return _step_count_figure(plt, plan, rows, cells, columns)
    drawn = [c for c in columns if series[c]]
    if len(rows) == 1 and set(drawn) <= _WITHIN_COLUMNS:
        # One row of a within-dataset table (CIFAR-100): a group per model kind, a bar
        # per labelling, coloured as in the within-dataset figures.
        labellings = list(dict.fromkeys(_labelling(c) for c in drawn))
        families = list(dict.fromkeys(_family(c) for c in drawn))
        by_kind = {(_family(c), _labelling(c)): value(rows[0], c) for c in drawn}
        fig = _bars(plt, families, labellings, lambda kind, name: by_kind.get((kind, name)),
                    _colours_for(labellings), "test accuracy (%)",
                    group_names={"LD": "LD (second-order)", "LD RR": "LD RR (ridge regression)"})
        return fig, (f"*Figure:* {rows[0]}: the learned labels beside true labels, label "
                     "smoothing and the teacher's labels of the same base images, per model "
                     "kind; error bars: std over test models.")
    if plan.name == "optimizer_transfer":
        # A group per optimizer, a bar per method: how far each method's labels carry.
        fig = _bars(plt, drawn, rows, lambda optimizer, row: value(row, optimizer),
                    _colours_for(rows), "test accuracy (%)", group_names=_OPTIMIZER_NAMES)
        return fig, ("*Figure:* the learned labels and step count used to train fresh "
                     "models with each optimizer at its usual learning rate; error bars: std "
                     "over test models.")
    if with_x:  # any other plan with a number per row: a line per column
        fig, ax = plt.subplots(layout="constrained", figsize=(_WIDTH_INCHES, 4.4))
        colours = _colours_for(drawn)
        for index, column in enumerate(drawn):
            _errorbar_series(ax, [(_dodge(x, index, len(drawn), plan.log_x), s)
                                  for x, s in series[column]], column, colours[column],
                             _MARKERS[index % len(_MARKERS)])
        _paper_points(ax, plan, rows, cells, columns, plan.log_x, 0, len(drawn), first=True)
        ax.set_xlabel(plan.x_label)
        _x_axis_at_rows(ax, plan, series)
        ax.set_ylabel("test accuracy (%)")
        _legend(fig, [ax])
        return fig, "*Figure:* the table's columns against its rows' numbers; error bars: std."
    # Bars: a group per row, a bar per column (at most MAX_LEGEND_ENTRIES of them: the
    # first ones with a number; the rest stay in the table).
    shown = drawn[:MAX_LEGEND_ENTRIES]
    fig = _bars(plt, [r for r in rows if any(value(r, c) for c in shown)], shown, value,
                _colours_for(shown), "test accuracy (%)")
    caption = ("*Figure:* per row, each column's mean test accuracy (written over its "
               "bar); error bars: std over test models.")
    if plan.name == "cross_dataset":
        caption = ("*Figure:* per pair, LD against the two fixed labellings of the same "
                   "base images (greys) and the teacher's labels, beside LD RR and "
                   "within-dataset LD of the same target (mean written over each bar); "
                   "error bars: std over test models.")
    if len(drawn) > len(shown):
        caption += f" Not drawn (in the table): {', '.join(drawn[len(shown):])}."
    return fig, caption


def _figure(plan, rows, columns, cells, output_dir) -> tuple[str | None, str]:
    """Draws the section's figure into <output_dir>/figures/; returns its path relative to
    output_dir (None: nothing to draw) and its caption."""
    fig, caption = _draw_figure(plan, rows, columns, cells)
    if fig is None:
        return None, ""
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    plt.close(fig)
    relative = f"{FIGURES_DIR}/{plan.name}_{plan.budget}.png"
    os.makedirs(os.path.join(output_dir, FIGURES_DIR), exist_ok=True)
    write_bytes_atomic(os.path.join(output_dir, relative), buffer.getvalue())
    return relative, caption
