"""experiments.reproduce: every experiment's smoke budget end to end on made-up data,
the report it writes, and the plans' fidelity to docs/method.md section 3's budget table."""

import json
import os

import numpy as np
import pytest

from kerasdistill.distill.identity import run_identity
from kerasdistill.errors import DistillError
from kerasdistill.experiment import resolve, to_json_dict
from kerasdistill.hardware import device_summary
from kerasdistill.reproduction.plans import BUDGETS, EXPERIMENTS, PAPER_NUMBERS, experiment_plan
from kerasdistill.reproduction.report import run_wall_seconds, write_report
from kerasdistill.reproduction.runner import folders_of, run_plan
from tests.conftest import assert_one_error, run_cli, write_fake_npz

# name -> (shape, classes, label offset, training examples)
_FAKE = {"mnist": ((28, 28), 10, 0, 600), "fashion_mnist": ((28, 28), 10, 0, 600),
         "kmnist": ((28, 28), 10, 0, 600), "emnist_letters": ((28, 28), 26, 1, 600),
         "kuzushiji49": ((28, 28), 49, 0, 600), "cifar10": ((32, 32, 3), 10, 0, 600),
         "cifar100": ((32, 32, 3), 100, 0, 600), "cub200": ((40, 40, 3), 200, 0, 600)}


@pytest.fixture(scope="module")
def every_dataset(tmp_path_factory):
    """Small made-up files for every registered dataset (CUB at 40x40: resized at load)."""
    folder = tmp_path_factory.mktemp("data")
    for seed, (name, (shape, classes, offset, count)) in enumerate(_FAKE.items()):
        # KMNIST's plans re-split its test split: enough test images for the smoke budget's
        # 128 targets and 64 validation images.
        path = write_fake_npz(str(folder / f"{name}.npz"), num_train=count, shape=shape,
                              num_classes=classes, seed=seed, label_offset=offset,
                              num_test=count if name == "kmnist" else 200)
        if name == "cifar100":  # 6 of each class: one per class survives the validation split
            arrays = dict(np.load(path))
            arrays["y_train"] = np.arange(count) % classes
            np.savez(path, **arrays)
    return str(folder)


@pytest.mark.parametrize("name", [name for name in EXPERIMENTS
                                  if name not in ("step_count", "target_set_size")])
def test_every_experiment_runs_at_the_smoke_budget_and_reports(name, every_dataset, tmp_path):
    # (step_count and target_set_size run in the two tests after this one.)
    plan = experiment_plan(name, "smoke")
    statuses = run_plan(plan, str(tmp_path), every_dataset, verbose=False)
    assert statuses and all(s.startswith("done") for s in statuses.values()), statuses
    report = open(write_report(str(tmp_path), [plan])).read()
    assert f"`{name}`, budget `smoke`" in report
    assert "not run" not in report  # every cell of the table has its number
    for run in plan.runs:
        assert f"| {run.row} |" in report
    assert os.path.exists(tmp_path / "figures" / f"{name}_smoke.png")
    if name == "cross_dataset":  # KMNIST's rows say their test images are a re-split's
        assert "Target re-split (kmnist.npz): its test split cut into " in report
        # 30 % of each class of the 600 made-up test images.
        assert "tested on those 179, not on an official test split" in report
    # A second call finds everything finished and runs nothing.
    again = run_plan(plan, str(tmp_path), every_dataset, verbose=False)
    assert set(again.values()) == {"skipped (finished)"}


def test_a_run_whose_data_is_missing_is_reported_and_the_rest_go_on(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_fake_npz(str(data / "cifar10.npz"), shape=(32, 32, 3))  # no cub200.npz
    plan = experiment_plan("cross_dataset", "smoke")
    statuses = run_plan(plan, str(tmp_path / "out"), str(data), only="*/cub200_to_cifar10_*",
                        verbose=False)
    # Absent data is the report's business, not a failure: "no data", with the reason.
    assert statuses and all(s.startswith("no data: data not on this machine: dataset "
                                         "'cub200'") for s in statuses.values()), statuses
    report = open(write_report(str(tmp_path / "out"), [plan])).read()
    assert "not run: data not on this machine: dataset 'cub200'" in report


def test_the_command_succeeds_when_only_data_is_missing_and_fails_on_a_fault(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_fake_npz(str(data / "cifar10.npz"), shape=(32, 32, 3))  # no cub200.npz
    common = ("--experiment=cross_dataset", "--budget=smoke", f"--data_dir={data}",
              f"--output_dir={tmp_path / 'out'}", "--verbose=false")
    done = run_cli("experiments.reproduce", *common, "--runs=*/cub200_to_cifar10_n10_ld")
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads((tmp_path / "out" / "reproduce_status.json").read_text())
    assert status["cross_dataset_smoke/cub200_to_cifar10_n10_ld"].startswith(
        "data not on this machine: dataset 'cub200'")
    (data / "cub200.npz").write_bytes(b"not a zip file")  # bad input: a failure
    failed = run_cli("experiments.reproduce", *common, "--runs=*/cub200_to_cifar10_n10_ld")
    assert_one_error(failed, "1 run(s) could not run")


def test_paper_plans_follow_the_budget_table():
    within = {os.path.basename(r.folder): r.config for r in
              experiment_plan("within_mnist", "paper").runs}
    for n, inner, epochs in ((10, 10, 400), (20, 10, 400), (50, 25, 400), (100, 50, 400),
                             (200, 50, 800), (500, 50, 800)):
        config = within[f"n{n}_ld" if n != 100 else "n100_ld_s1234"]  # the main cell's
        assert (config.distill.inner_batch_size, config.distill.epochs) == (inner, epochs)
        assert config.architecture == "lenet" and config.test_repetitions == 20
        assert config.distill.seed == 1234 and config.distill.outer_batch_size == 1024
    cifar = {os.path.basename(r.folder): r.config
             for r in experiment_plan("cifar100", "paper").runs}["n100_ld"]
    assert (cifar.distill.inner_batch_size, cifar.distill.epochs, cifar.architecture) == (
        100, 800, "alexnet")
    cross = [r.config for r in experiment_plan("cross_dataset", "paper").runs
             if "kuzushiji49" in r.folder and r.folder.endswith("_ld")]
    assert {(c.distill.num_base_examples, c.distill.epochs) for c in cross} == {
        (10, 100), (20, 100), (50, 100), (100, 100), (200, 200), (500, 200)}
    assert all(c.base_selection == "auto" and c.source == "emnist_letters" for c in cross)


def test_cpu_target_set_sizes_get_their_own_epochs_of_about_a_thousand_meta_steps():
    # Each size's epochs are chosen for ~1,000 meta steps (at most 400 epochs); the cpu
    # budget's 1/20 cut of the paper's epochs must not shrink them a second time.
    for run in experiment_plan("target_set_size", "cpu").runs:
        size = run.config.target_set_size or 50_000
        steps_per_epoch = -(-size // min(1024, size))
        steps = run.config.distill.epochs * steps_per_epoch
        assert 400 <= steps <= 1_050, (run.folder, run.config.distill.epochs, steps)
    within = {os.path.basename(r.folder): r.config for r in
              experiment_plan("within_mnist", "cpu").runs}
    assert within["n100_ld"].distill.epochs == 20
    # KMNIST's re-split pool of 6,000 (6 outer batches an epoch): ~1,000 meta steps too.
    kmnist = [r.config for r in experiment_plan("cross_dataset", "cpu").runs
              if r.config.target == "kmnist"]
    assert kmnist and all(c.distill.epochs * 6 in range(1000, 1007) and
                          c.target_split == "from_test" for c in kmnist)


def test_shared_folders_hold_one_config_and_the_paper_numbers_have_cells():
    for budget in BUDGETS:
        seen = {}
        for name in EXPERIMENTS:
            for folder, (config, _) in folders_of(experiment_plan(name, budget)).items():
                # A folder shared by two experiments must be the same run in both,
                # apart from the free (evaluation-only) settings.
                free = dict(eval_architectures=(), eval_optimizers=(), step_offsets=())
                key = config.__class__(**{**config.__dict__, **free})
                assert seen.setdefault(folder, key) == key, folder
    for name, row, column in PAPER_NUMBERS:
        assert any(r.row == row and r.column == column
                   for r in experiment_plan(name, "paper").runs)


def test_unknown_experiment_and_budget_are_refused():
    with pytest.raises(DistillError, match="unknown experiment"):
        experiment_plan("within_svhn", "paper")
    with pytest.raises(DistillError, match="budget must be"):
        experiment_plan("within_mnist", "weekend")
    assert_one_error(run_cli("experiments.reproduce", "--experiment=within_svhn"),
                     "unknown experiment")
    assert_one_error(run_cli("experiments.reproduce"), "--experiment is required")


def test_experiments_sharing_a_folder_keep_each_others_results(every_dataset, tmp_path):
    first = run_plan(experiment_plan("optimizer_transfer", "smoke"), str(tmp_path),
                     every_dataset, verbose=False)
    assert all(s.startswith("done") for s in first.values()), first
    # step_count reads the same folders: already finished, nothing is run again...
    again = run_plan(experiment_plan("step_count", "smoke"), str(tmp_path), every_dataset,
                     verbose=False)
    assert set(again.values()) == {"skipped (finished)"}
    # ...and both experiments' cells are in the one results.json of each folder.
    report = open(write_report(str(tmp_path))).read()
    assert "`optimizer_transfer`, budget `smoke`" in report
    assert "`step_count`, budget `smoke`" in report
    for folder in folders_of(experiment_plan("step_count", "smoke")):
        results = json.load(open(tmp_path / folder / "results.json"))
        assert {"optimizer_transfer", "step_offsets"} <= set(results)


def test_every_target_set_size_distils_labels_for_the_same_base_images(every_dataset,
                                                                       tmp_path):
    plan = experiment_plan("target_set_size", "smoke")
    statuses = run_plan(plan, str(tmp_path), every_dataset, only="[tw]*_ld", verbose=False)
    assert len(statuses) == 3 and all(s.startswith("done") for s in statuses.values())
    indices = {folder: json.load(open(tmp_path / folder / "results.json"))["base_indices"]
               for folder in statuses}
    assert len({tuple(v) for v in indices.values()}) == 1, indices
    # The paper's setting beside ours: EMNIST letters' base images, the same for every size.
    statuses = run_plan(plan, str(tmp_path), every_dataset, only="*emnist*", verbose=False)
    assert len(statuses) == 3 and all(s.startswith("done") for s in statuses.values())
    results = [json.load(open(tmp_path / folder / "results.json")) for folder in statuses]
    assert len({tuple(r["base_indices"]) for r in results}) == 1
    assert {r["source_origin"] for r in results} == {"emnist_letters.npz"}


def test_a_resumed_runs_wall_time_counts_every_session():
    # The last session's total_seconds (38 min) is not the run's: its checkpointed
    # meta-training and validation seconds say it took 140 min.
    resumed = {"wall_times": {"data_seconds": 14.0, "meta_train_seconds": 5578.0,
                              "validation_seconds": 550.0, "test_seconds": 362.0,
                              "transfer_seconds": 1894.0, "total_seconds": 2281.0}}
    assert run_wall_seconds(resumed) == pytest.approx(8398.0)
    one_session = {"wall_times": {"data_seconds": 1.0, "teacher_seconds": 130.0,
                                  "test_seconds": 157.0, "total_seconds": 290.0}}
    assert run_wall_seconds(one_session) == 290.0
    assert run_wall_seconds({}) == 0.0
    # Written since the writer counts every session: its total is taken as it is.
    counted = {"wall_times": {"meta_train_seconds": 5578.0, "validation_seconds": 550.0,
                              "session_seconds": 2281.0, "total_seconds": 7000.0}}
    assert run_wall_seconds(counted) == 7000.0


def test_summarize_counts_every_session_of_a_resumed_run(tmp_path):
    from experiments.summarize import _row
    config = {"distill": {"num_base_examples": 100, "inner_batch_size": 50, "epochs": 400},
              "source": "mnist", "target": "mnist", "baseline": "none",
              "algorithm": "second_order"}
    results = {"method": "second_order", "test_accuracy_mean": 0.8638,
               "test_accuracy_std": 0.0061, "test_accuracies": [0.86] * 20,
               "num_train_steps": 263, "outer_precision": "float32",
               "wall_times": {"meta_train_seconds": 5580.0, "validation_seconds": 550.0,
                              "test_seconds": 270.0, "total_seconds": 2281.0}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert _row(str(tmp_path)).endswith("| 106.7 |")


def test_the_report_names_the_device_in_words():
    avx2 = {"cpu_model": "AMD EPYC", "cpu_count": 2, "avx512f": False, "avx2": True,
            "avx512_bf16": False, "TF_ENABLE_ONEDNN_OPTS": "1", "gpus": []}
    assert device_summary(avx2) == "AMD EPYC, 2 cores, AVX2, oneDNN on"
    gpu = {**avx2, "avx512f": True, "avx512_bf16": True, "TF_ENABLE_ONEDNN_OPTS": None,
           "gpus": [{"name": "/physical_device:GPU:0", "model": "NVIDIA H200"}]}
    assert device_summary(gpu) == "AMD EPYC, 2 cores, AVX-512 BF16, oneDNN default; NVIDIA H200"
    assert device_summary({}) == ""


def _write_finished(output_dir, config, folder, mean, std=0.01):
    (output_dir / folder).mkdir(parents=True)
    (output_dir / folder / "results.json").write_text(json.dumps(
        {"test_accuracy_mean": mean, "test_accuracy_std": std, "num_train_steps": 100,
         "test_accuracies": [mean] * config.test_repetitions, "epochs": config.distill.epochs,
         "run_identity": run_identity(to_json_dict(resolve(config)))}))


def test_a_row_made_only_of_another_experiments_folders_is_tabled(tmp_path):
    """The target-set-size row of the whole training set is the within-dataset run."""
    plan = experiment_plan("target_set_size", "paper")
    run = next(r for r in plan.runs if r.folder == "within_mnist_paper/n100_ld")
    _write_finished(tmp_path, run.config, run.folder, 0.87)
    report = open(write_report(str(tmp_path), [plan])).read()
    assert f"| {run.row} | 87.00 +- 1.00 |" in report
    assert f"Not run yet: 100 target examples," in report


def test_the_cross_dataset_report_says_plainly_whether_ld_beats_both_fixed_labellings(
        tmp_path):
    # LD beats uniform by far more than the spread, and loses to the class mapping.
    made_up = {"ld": (0.70, 0.01), "uniform": (0.10, 0.0), "class_mapping": (0.72, 0.02),
               "teacher": (0.75, 0.01)}
    plan = experiment_plan("cross_dataset", "paper")
    configs = {run.folder: run.config for run in plan.runs}
    for name, (mean, std) in made_up.items():
        relative = f"cross_dataset_paper/fashion_mnist_to_mnist_n100_{name}"
        config = configs[relative]
        (tmp_path / relative).mkdir(parents=True)
        # The teacher run has 5 test models, not the plan's 20: not the plan's run.
        models = 5 if name == "teacher" else 20
        (tmp_path / relative / "results.json").write_text(json.dumps(
            {"test_accuracy_mean": mean, "test_accuracy_std": std, "num_train_steps": 100,
             "test_accuracies": [mean] * models, "epochs": config.distill.epochs,
             "run_identity": run_identity(to_json_dict(resolve(config)))}))
    # Within-dataset LD at n = 10, the cross table's last column in its n = 10 rows: it
    # alone does not make those rows run.
    _write_finished(tmp_path, configs["within_mnist_paper/n10_ld"], "within_mnist_paper/n10_ld",
                    0.58)
    report = open(write_report(str(tmp_path), [plan])).read()
    row = "fashion_mnist -> mnist, n = 100"
    assert (f"- {row}: LD beats uniform by +60.00 points (more than the spread 1.00); "
            f"does NOT beat class mapping by -2.00 points (less than the spread 3.00).") \
        in report
    # The row with results is a table row; rows with none are one "not run yet" line.
    assert f"| {row} | 70.00 +- 1.00 |" in report
    assert "| emnist_letters -> mnist, n = 10 |" not in report
    assert "| fashion_mnist -> mnist, n = 10 |" not in report
    assert "Not run yet: emnist_letters -> mnist, n = 10," in report
    assert "fashion_mnist -> mnist, n = 10," in report.split("Not run yet:")[1]
    assert "75.00" not in report
    assert ("| `cross_dataset_paper/fashion_mnist_to_mnist_n100_teacher` | not the plan's run: "
            "5 test models, the plan has 20 |") in report


def test_a_plan_running_beside_another_keeps_the_others_failures(tmp_path, monkeypatch):
    from kerasdistill.reproduction import runner
    status_path = tmp_path / runner.STATUS_FILE

    def finish_while_another_plan_records_a_failure(config, model_dir, verbose=True,
                                                    finished=None):
        status_path.write_text(json.dumps({"other_plan/run": "dataset 'cub200' not found"}))

    monkeypatch.setattr(runner, "run_experiment", finish_while_another_plan_records_a_failure)
    statuses = run_plan(experiment_plan("within_mnist", "smoke"), str(tmp_path), None,
                        only="*/n10_ld", verbose=False)
    assert list(statuses.values())[0].startswith("done")
    assert json.loads(status_path.read_text()) == {
        "other_plan/run": "dataset 'cub200' not found"}


def test_plans_running_side_by_side_keep_each_others_status_entries(tmp_path):
    """Two processes record failures in one status file at once: none is lost."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT
    status_path = tmp_path / "reproduce_status.json"
    go = tmp_path / "go"
    script = ("import os, sys, time\n"
              "from kerasdistill.reproduction.runner import _record_status\n"
              "print('ready', flush=True)\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
              "for i in range(40):\n"
              f"    _record_status({str(status_path)!r}, f'{{sys.argv[1]}}/run{{i}}', 'failed')\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, name], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    try:
        for writer in writers:
            assert writer.stdout.readline().strip() == "ready"
        go.write_text("")
        for writer in writers:
            assert writer.wait(timeout=300) == 0
    finally:  # never leave a writer waiting for "go" behind
        go.write_text("")
        for writer in writers:
            writer.kill()
            writer.wait()
            writer.stdout.close()
    with open(status_path) as f:
        recorded = json.load(f)
    assert sorted(recorded) == sorted(f"{name}/run{i}" for name in "ab" for i in range(40))


def test_a_cell_of_several_seeds_is_the_mean_and_spread_of_their_means():
    from kerasdistill.reproduction.report import _cell, combined_over_seeds
    runs = [{"test_accuracy_mean": 0.90, "test_accuracy_std": 0.01}, None,
            {"test_accuracy_mean": 0.80, "test_accuracy_std": 0.03}]
    combined = combined_over_seeds(runs)
    assert combined["test_accuracy_mean"] == pytest.approx(0.85)
    # The sample std between the seeds' means.
    assert combined["test_accuracy_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert _cell(combined) == "85.00 +- 7.07 (2 of 3 seeds)"
    assert combined_over_seeds([runs[0], None])["test_accuracy_std"] == 0.01
    assert combined_over_seeds([None, None]) is None
    plan = experiment_plan("beyond", "cpu")
    cells = {}
    for run in plan.runs:
        cells.setdefault((run.row, run.column), []).append(run)
    assert {len(seeds) for seeds in cells.values()} == {3}
    assert all(len({r.config.distill.seed for r in seeds}) == 3 for seeds in cells.values())
    # One-hot starts need the target's own classes: none in a cross-dataset row.
    assert not any(("one-hot" in column and "->" in row) for row, column in cells)
    # Every cell's settings were accepted: building the plan constructed (and so checked)
    # each config, the pool's need of a searched step count included.
    assert any(run.config.learner_pool == 4 for run in plan.runs)


def test_beyond_verdicts_name_the_winner_and_compare_within_a_recipe():
    from kerasdistill.reproduction.report import beyond_verdicts

    def cell(mean, std):
        return {"test_accuracy_mean": mean / 100, "test_accuracy_std": std / 100}

    columns = ["uniform-init LD (paper)", "teacher labels", "teacher-init LD", "teacher labels, crop",
               "teacher-init LD, crop"]
    summaries = {("row", "uniform-init LD (paper)"): cell(60, 2), ("row", "teacher labels"): cell(80, 1),
                 ("row", "teacher-init LD"): cell(83, 1), ("row", "teacher labels, crop"): cell(90, 1),
                 ("row", "teacher-init LD, crop"): cell(90.5, 1), ("empty", "teacher labels"): None}
    lines = beyond_verdicts(["row", "empty"], columns, summaries)
    assert len(lines) == 2 and lines[0] == ""
    assert "best: teacher-init LD, crop, 90.50 +- 1.00" in lines[1]
    assert ("best learned labels (teacher-init LD) beats teacher labels beyond the spread: "
            "+3.00 points, spread 2.00") in lines[1]
    # Learned labels with crop are judged against the teacher's with crop only.
    assert ("best learned labels with crop (teacher-init LD, crop) does not beat teacher "
            "labels, crop beyond the spread: +0.50 points, spread 2.00") in lines[1]
    # ZCA is a recipe of its own: its learned labels against the teacher's with ZCA only.
    zca_columns = ["teacher labels", "teacher labels, ZCA", "teacher-init LD, horizon, ZCA"]
    zca = {("row", "teacher labels"): cell(70, 1), ("row", "teacher labels, ZCA"): cell(85, 1),
           ("row", "teacher-init LD, horizon, ZCA"): cell(88, 0.5)}
    [_, line] = beyond_verdicts(["row"], zca_columns, zca)
    assert ("best learned labels with ZCA (teacher-init LD, horizon, ZCA) beats teacher "
            "labels, ZCA beyond the spread: +3.00 points, spread 1.50") in line
    assert "best learned labels (" not in line  # no LD column of the paper's recipe
    # The teacher held at its best: its epochs-searched column, when that one is better.
    searched = {("row", "teacher labels"): cell(80, 1), ("row", "teacher-init LD"): cell(83, 1),
                ("row", "teacher labels, 1-10 epochs searched"): cell(82.5, 0.5)}
    [_, line] = beyond_verdicts(["row"], list(c for _, c in searched), searched)
    assert ("best learned labels (teacher-init LD) does not beat teacher labels, 1-10 epochs "
            "searched beyond the spread: +0.50 points, spread 1.50") in line


def test_a_fault_in_a_run_is_recorded_by_its_cause_with_the_traceback_in_the_log(
        tmp_path, monkeypatch, capsys):
    """A tf.function's TypeError starts "in user code:"; the status keeps the cause."""
    from kerasdistill.reproduction import runner

    def fail(config, model_dir, verbose=True, finished=None):
        raise TypeError("in user code:\n\n    File \"x.py\", line 3, in step\n\n"
                        "    TypeError: unsupported operand type(s) for +: 'int' and 'str'\n")

    monkeypatch.setattr(runner, "run_experiment", fail)
    statuses = run_plan(experiment_plan("within_mnist", "smoke"), str(tmp_path), None,
                        only="*/n10_ld", verbose=False)
    reason = "TypeError: TypeError: unsupported operand type(s) for +: 'int' and 'str'"
    assert list(statuses.values()) == [f"failed: {reason}"]
    assert list(json.loads((tmp_path / runner.STATUS_FILE).read_text()).values()) == [reason]
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    # A runtime error puts its cause first, then the node and op names.
    from kerasdistill.reproduction.runner import _unexpected
    runtime = ValueError("{{function_node __inference_f_12}} Incompatible shapes: [2] vs. [3]"
                         "\n\t [[{{node add}}]] [Op:__inference_f_12]\nHint: see the log")
    assert _unexpected(runtime) == "ValueError: Incompatible shapes: [2] vs. [3]"


def test_pending_runs_print_as_one_command_each(every_dataset, tmp_path):
    plan = experiment_plan("within_mnist", "smoke")
    common = ("--experiment=within_mnist", "--budget=smoke", f"--data_dir={every_dataset}",
              f"--output_dir={tmp_path}")
    printed = run_cli("experiments.reproduce", *common, "--print_pending")
    assert printed.returncode == 0, printed.stderr[-3000:]
    lines = printed.stdout.splitlines()
    assert len(lines) == len(folders_of(plan)) == 6
    assert all(line.startswith("python -m experiments.reproduce --experiment=within_mnist "
                               "--budget=smoke") for line in lines)
    assert not (tmp_path / "REPORT.md").exists()  # printing runs nothing
    first = lines[0].split("--runs=")[1].split()[0]
    assert first == next(iter(folders_of(plan)))
    run_plan(plan, str(tmp_path), every_dataset, only=first, verbose=False)
    again = run_cli("experiments.reproduce", *common, "--print_pending")
    assert len(again.stdout.splitlines()) == 5
    assert all(f"--runs={first} " not in line for line in again.stdout.splitlines())


def test_two_workers_on_one_output_folder_run_each_run_once(every_dataset, tmp_path):
    """Two processes started at once on one plan: every run is done by exactly one of
    them (each claims a run by its folder's lock and skips what the other holds), and the
    report is the one a single process writes."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT
    common = ["-m", "experiments.reproduce", "--experiment=within_mnist", "--budget=smoke",
              f"--data_dir={every_dataset}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    workers = [subprocess.Popen([sys.executable, *common, f"--output_dir={tmp_path / 'two'}"],
                                cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=900) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [e[-2000:] for _, e in outputs]
    done = [{line.split("] ")[1].split(": done")[0] for line in err.splitlines()
             if ": done in " in line} for _, err in outputs]
    plan = experiment_plan("within_mnist", "smoke")
    assert done[0] | done[1] == set(folders_of(plan))  # every run done ...
    assert not done[0] & done[1]  # ... by one worker only
    one = run_cli("experiments.reproduce", *common[2:], f"--output_dir={tmp_path / 'one'}",
                  "--verbose=false")
    assert one.returncode == 0, one.stderr[-3000:]

    def table(folder):  # the report less its wall times and figures (they differ by run)
        text = (tmp_path / folder / "REPORT.md").read_text()
        return text.split("<details>")[0]
    assert table("two") == table("one")


def test_the_papers_main_cell_is_three_seeds_of_plain_runs():
    from kerasdistill.reproduction.plans import MAIN_CELL_SEEDS
    plan = experiment_plan("within_mnist", "paper")
    cell = [run for run in plan.runs if (run.row, run.column) == ("n = 100", "LD")]
    assert [run.config.distill.seed for run in cell] == list(MAIN_CELL_SEEDS)
    assert [run.folder for run in cell] == [f"within_mnist_paper_seeds/n100_ld_s{seed}"
                                            for seed in MAIN_CELL_SEEDS]
    assert all(run.config.distill.epochs == 400 and not run.config.eval_optimizers
               for run in cell)
    # The transfer experiments still read the seed-1234 run that carries their entries.
    assert "within_mnist_paper/n100_ld" in folders_of(experiment_plan("step_count", "paper"))


def test_other_teachers_share_the_base_images_and_differ_only_by_the_teachers_seed():
    """The teacher baseline's spread over teachers: for each cross-script row and seed, the
    teacher-seed columns are the teacher held at its best with only teacher_seed changed."""
    import dataclasses
    runs = {run.folder: run.config for run in experiment_plan("beyond", "cpu").runs}
    for row in ("emnist_to_kmnist_n100_lenet", "emnist_to_mnist_n100_lenet"):
        for seed in (1234, 0, 465):
            best = runs[f"beyond_cpu/{row}_teacher_epochs_searched_s{seed}"]
            assert best.teacher_seed is None and best.teacher_epoch_choice == "search"
            for teacher_seed in (1, 2):
                other = runs[f"beyond_cpu/{row}_teacher_epochs_searched_t{teacher_seed}_s{seed}"]
                assert other == dataclasses.replace(best, teacher_seed=teacher_seed)
    # Issue 13's rows are left as they were.
    assert not [folder for folder in runs if folder.startswith("beyond_cpu/mnist_")
                and "_t1_" in folder]
