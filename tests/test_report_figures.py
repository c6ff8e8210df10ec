"""REPORT.md's figures: each shows its section's comparison with a short legend, std error
bars and the paper's number; the beyond figure picks the paper's LD, the teacher's labels
and the best learned labels per row; no figure or report text names an issue number."""

import json
import os
import re

import pytest

from kerasdistill.reproduction import report
from kerasdistill.reproduction.plans import BUDGETS, EXPERIMENTS, PAPER_NUMBERS, experiment_plan
from kerasdistill.reproduction.report import (MAX_LEGEND_ENTRIES, beyond_figure_bars,
                                              without_issue_numbers, write_report)

ISSUE_NUMBER = re.compile(r"issues?\s*#?\s*\d", re.IGNORECASE)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cell(mean, std=1.0, seeds=None):
    summary = {"test_accuracy_mean": mean / 100, "test_accuracy_std": std / 100}
    if seeds:
        summary.update(seeds=seeds[0], planned_seeds=seeds[1])
    return summary


PAPER, TEACHER, TEACHER_SEARCHED = ("uniform-init LD (paper)", "teacher labels",
                                    "teacher labels, 1-10 epochs searched")
TEACHER_CROP, TEACHER_ZCA = "teacher labels, crop", "teacher labels, ZCA"
ONE_HOT, HORIZON = "one-hot-init LD", "teacher-init LD, softmax labels, whole-run horizon T = 200"
HORIZON_CROP, HORIZON_ZCA = HORIZON + ", crop", HORIZON + ", ZCA"
COLUMNS = [PAPER, TEACHER, ONE_HOT, HORIZON, TEACHER_CROP, HORIZON_CROP, TEACHER_ZCA,
           HORIZON_ZCA, TEACHER_SEARCHED]


def test_the_beyond_figure_draws_the_papers_ld_the_teacher_and_the_best_learned_labels():
    summaries = {
        # Best learned labels are crop's: the teacher's bar is the teacher's with crop.
        ("crop wins", PAPER): _cell(69), ("crop wins", TEACHER): _cell(91.7),
        ("crop wins", HORIZON): _cell(93.4), ("crop wins", TEACHER_CROP): _cell(93.5),
        ("crop wins", HORIZON_CROP): _cell(94.6), ("crop wins", TEACHER_ZCA): _cell(86),
        ("crop wins", ONE_HOT): _cell(87.5),
        # The paper's recipe wins: the teacher held at its best (its epochs searched).
        ("plain wins", PAPER): _cell(48.8), ("plain wins", TEACHER): _cell(50.6),
        ("plain wins", TEACHER_SEARCHED): _cell(52.0), ("plain wins", ONE_HOT): _cell(56.7),
        ("plain wins", HORIZON): _cell(52.8), ("plain wins", TEACHER_CROP): _cell(60.0),
        # The paper's LD is best: the best learned bar is still the best other recipe.
        ("paper best", PAPER): _cell(80), ("paper best", TEACHER): _cell(70),
        ("paper best", HORIZON): _cell(75, seeds=(2, 3)),
        # ZCA's learned labels without ZCA's teacher: the paper's recipe's teacher.
        ("zca only", PAPER): _cell(50), ("zca only", TEACHER): _cell(60),
        ("zca only", HORIZON_ZCA): _cell(65),
        # Only the teacher's labels (nothing to compare): not drawn.
        ("teacher only", TEACHER): _cell(95.8), ("not run", PAPER): None,
    }
    rows = ["crop wins", "plain wins", "paper best", "zca only", "teacher only", "not run",
            "absent"]
    bars = beyond_figure_bars(rows, COLUMNS, summaries)

    def picked(row):
        return [(role, column) for role, column, _ in bars[row]]

    roles = ["the paper's LD", "the teacher's labels", "the best learned labels"]
    assert list(bars) == ["crop wins", "plain wins", "paper best", "zca only"]
    assert picked("crop wins") == list(zip(roles, [PAPER, TEACHER_CROP, HORIZON_CROP]))
    assert picked("plain wins") == list(zip(roles, [PAPER, TEACHER_SEARCHED, ONE_HOT]))
    assert picked("paper best") == list(zip(roles, [PAPER, TEACHER, HORIZON]))
    assert picked("zca only") == list(zip(roles, [PAPER, TEACHER, HORIZON_ZCA]))
    assert bars["paper best"][2][2] is summaries["paper best", HORIZON]  # its own summary
    # A missing cell leaves its bar out; the others stay.
    partial = beyond_figure_bars(["row"], COLUMNS, {("row", TEACHER): _cell(60),
                                                    ("row", HORIZON): _cell(65)})
    assert [role for role, _, _ in partial["row"]] == roles[1:]


def _fabricated_cells(plan):
    """Every cell of the plan with a made-up number, as the report's section builds them."""
    rows, columns, cells = [], [], {}
    for index, run in enumerate(plan.runs):
        rows.append(run.row) if run.row not in rows else None
        columns.append(run.column) if run.column not in columns else None
        mean = 30 + (index * 37) % 65
        cells.setdefault((run.row, run.column), (_cell(mean, 1 + index % 3), run))
    return rows, columns, cells


def _texts(fig):
    import matplotlib.text
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def _legend_entries(fig):
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


@pytest.mark.parametrize("budget", [b for b in BUDGETS])
def test_every_figure_is_short_of_legend_with_std_bars_and_the_papers_number(budget):
    import matplotlib.pyplot as plt
    from matplotlib.container import BarContainer, ErrorbarContainer
    for name in EXPERIMENTS:
        plan = experiment_plan(name, budget)
        rows, columns, cells = _fabricated_cells(plan)
        fig, caption = report._draw_figure(plan, rows, columns, cells)
        try:
            assert fig is not None and caption, name
            entries = _legend_entries(fig)
            assert 1 <= len(entries) <= MAX_LEGEND_ENTRIES, (name, entries)
            assert len(set(entries)) == len(entries), (name, entries)
            texts = _texts(fig) + [caption]
            assert not [t for t in texts if ISSUE_NUMBER.search(t)], name
            # Every drawn series carries its std: bars with error bars, lines as errorbars.
            containers = [c for ax in fig.axes for c in ax.containers]
            bars = [c for c in containers if isinstance(c, BarContainer)]
            assert containers and all(c.errorbar is not None for c in bars), name
            if not bars:
                assert all(isinstance(c, ErrorbarContainer) for c in containers), name
            if any(key[0] == name and (key[1], key[2]) in cells for key in PAPER_NUMBERS):
                assert "the paper's number" in entries, name
        finally:
            plt.close(fig)


def test_the_beyond_figure_has_three_bars_a_row_and_a_three_entry_legend():
    import matplotlib.pyplot as plt
    plan = experiment_plan("beyond", "cpu")
    rows, columns, cells = _fabricated_cells(plan)
    fig, caption = report._draw_figure(plan, rows, columns, cells)
    try:
        assert _legend_entries(fig) == ["the paper's LD", "the teacher's labels",
                                        "the best learned labels"]
        panels = [ax for ax in fig.axes if ax.patches]
        assert len(panels) == len(rows)  # every made-up row has learned labels
        # Each bar named by its column: the recipe of the best learned labels shows. Three
        # bars a row; two in the rows across scripts, which have no paper's LD column.
        chosen = beyond_figure_bars(rows, columns, {k: c[0] for k, c in cells.items()})
        for ax, row in zip(panels, rows):
            assert len(ax.patches) == (3 if (row, "uniform-init LD (paper)") in cells else 2)
            labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
            assert labels == [column for _, column, _ in chosen[row]]
            assert ax.get_title(loc="left") == row
    finally:
        plt.close(fig)


def test_report_text_names_no_issue_numbers(tmp_path, monkeypatch):
    assert without_issue_numbers("labels against a trained teacher's (issue 13)") == \
        "labels against a trained teacher's"
    assert without_issue_numbers("as before (issue 26, item 4).") == "as before."
    assert not ISSUE_NUMBER.search(without_issue_numbers("Issue #9's rows, issues 13"))
    # Every beyond run's results count as the plan's (their identities are not the point).
    monkeypatch.setattr(report, "why_not_finished", lambda *args, **kwargs: None)
    plan = experiment_plan("beyond", "cpu")
    for index, run in enumerate(plan.runs[:40]):
        folder = tmp_path / run.folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(
            {"test_accuracy_mean": 0.5 + index / 100, "test_accuracy_std": 0.01,
             "num_train_steps": 100, "method": "second_order", "test_accuracies": [0.5]}))
    (tmp_path / "reproduce_status.json").write_text(json.dumps(
        {plan.runs[-1].folder: "stopped: see issue 13's notes"}))
    text = open(write_report(str(tmp_path), [plan])).read()
    assert not ISSUE_NUMBER.search(text), ISSUE_NUMBER.findall(text)
    assert "## Beyond the paper: labels against a trained teacher's (`beyond`" in text
    assert "![Beyond the paper: labels against a trained teacher's](figures/beyond_cpu.png)" \
        in text
    assert "*Figure:* per row, the paper's LD" in text
    assert (tmp_path / "figures" / "beyond_cpu.png").exists()


def test_the_committed_report_names_no_issue_numbers():
    path = os.path.join(REPO_ROOT, "results", "REPORT.md")
    if not os.path.exists(path):
        pytest.skip("no results/REPORT.md in this checkout")
    text = open(path).read()
    assert not ISSUE_NUMBER.search(text), ISSUE_NUMBER.findall(text)
