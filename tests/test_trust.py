"""Nothing silently wrong: run identity, atomic checkpoints, corrupt checkpoints,
non-finite steps, and every bad input refused before any file is written."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.config import identity_rules
from kerasdistill.distill import meta_step
from kerasdistill.distill.identity import run_identity
from kerasdistill.distill.loop import NonFiniteError
from kerasdistill.errors import DistillError
from kerasdistill.experiment import resolve, run_experiment, to_json_dict
from tests.conftest import REPO_ROOT, assert_one_error, run_cli, tiny_config, write_fake_npz


def _config(data_dir, **changes):
    return tiny_config(data_dir, **changes)


def _with_distill(config, **changes):
    return dataclasses.replace(config, distill=dataclasses.replace(config.distill, **changes))


def _run(config, model_dir):
    return run_experiment(config, str(model_dir), verbose=False)


def _snapshot(folder) -> dict:
    """Every file under `folder` with its bytes (and nothing else changes either)."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


@pytest.fixture
def finished_run(fake_data_dir, tmp_path):
    model_dir = tmp_path / "run"
    results = _run(_config(fake_data_dir), model_dir)
    return model_dir, results


# --- run identity ---------------------------------------------------------------------

def test_every_setting_but_the_free_ones_is_in_the_identity():
    base = to_json_dict(resolve(_config("data")))
    identity = run_identity(base)
    changed_values = {"target": "fashion_mnist", "source": "fashion_mnist",
                      "algorithm": "ridge_regression", "architecture": "alexnet",
                      "baseline": "true_labels", "base_selection": "unbalanced",
                      "num_validation": 200, "target_set_size": 300, "outer_splits": 1,
                      "hypergradient": "reverse", "outer_precision": "mixed_conv_bfloat16"}
    for key, value in changed_values.items():
        assert run_identity({**base, key: value}) != identity, key
    for key, value in {"num_base_examples": 20, "inner_batch_size": 10, "outer_batch_size": 32,
                       "seed": 8, "label_learning_rate": 0.01, "validation_every_epochs": 2,
                       "reset_window": 5}.items():
        assert run_identity({**base, "distill": {**base["distill"], key: value}}) != identity, key
    smoothing = {**base, "baseline": "label_smoothing"}
    assert run_identity({**smoothing, "label_smoothing": 0.2}) != run_identity(smoothing)
    for key, value in {"data_dir": "elsewhere", "download": True, "test_repetitions": 5,
                       "eval_architectures": ["resnet"], "eval_optimizers": ["sgd"],
                       "step_offsets": [10], "transfer_repetitions": 3}.items():
        assert run_identity({**base, key: value}) == identity, key
    assert "distill.jit_compile" in identity_rules().free
    for key, value in {"jit_compile": True, "epochs": 800}.items():
        assert run_identity({**base, "distill": {**base["distill"], key: value}}) == identity
    # A default spelt out is the same run: reset_window None is the rule's 50 for n = 10.
    explicit = {**base, "num_validation": 10_000,
                "distill": {**base["distill"], "reset_window": None}}
    assert run_identity(explicit) == run_identity(
        {**base, "num_validation": None, "distill": {**base["distill"], "reset_window": 50}})


@pytest.mark.parametrize("changes", [{"target": "fashion_mnist"}, {"architecture": "alexnet"},
                                     {"algorithm": "ridge_regression"},
                                     {"distill_seed": 8}])
def test_rerun_with_other_settings_is_refused_and_changes_nothing(finished_run,
                                                                  fake_data_dir, changes):
    model_dir, _ = finished_run
    before = _snapshot(model_dir)
    config = _config(fake_data_dir, **{k: v for k, v in changes.items() if k != "distill_seed"})
    if "distill_seed" in changes:
        config = _with_distill(config, seed=changes["distill_seed"])
    with pytest.raises(DistillError, match="other settings") as error:
        _run(config, model_dir)
    key = next(iter(changes)).replace("distill_seed", "distill.seed")
    assert key in str(error.value)
    assert _snapshot(model_dir) == before


def test_rerun_with_other_target_on_the_command_line_exits_2_untouched(finished_run,
                                                                       fake_data_dir):
    model_dir, _ = finished_run
    before = _snapshot(model_dir)
    result = run_cli("experiments.distill", f"--data_dir={fake_data_dir}",
                  f"--model_dir={model_dir}", "--target=fashion_mnist", "--num_validation=100",
                  "--num_base_examples=10", "--inner_batch_size=5", "--epochs=3",
                  "--outer_batch_size=64", "--seed=7", "--validation_every_epochs=1",
                  "--reset_window=3", "--test_repetitions=2")
    assert_one_error(result, "target 'mnist' (this command: 'fashion_mnist')")
    assert _snapshot(model_dir) == before


def test_finished_run_may_be_extended_and_evaluated_again(finished_run, fake_data_dir):
    model_dir, first = finished_run
    more_tests = _run(_config(fake_data_dir, test_repetitions=3), model_dir)
    assert more_tests["test_accuracies"][:2] == first["test_accuracies"]
    assert more_tests["labels"] == first["labels"] and len(more_tests["test_accuracies"]) == 3
    longer = _run(_with_distill(_config(fake_data_dir), epochs=4), model_dir)
    assert longer["resumed_from_epoch"] == 3 and longer["meta_steps"] > first["meta_steps"]
    assert [p["epoch"] for p in longer["validation_curve"]] == [1, 2, 3, 4]
    # The old results stay beside the new ones, under their epoch count.
    assert json.loads((model_dir / "results.epochs-3.json").read_text())["labels"] == \
        more_tests["labels"]
    fresh = _run(_with_distill(_config(fake_data_dir), epochs=4), model_dir.parent / "fresh")
    for key in ("labels", "validation_curve", "reset_points", "test_accuracies",
                "num_train_steps"):
        assert longer[key] == fresh[key], key
    before = _snapshot(model_dir)
    with pytest.raises(DistillError, match="would shorten it"):
        _run(_config(fake_data_dir), model_dir)  # 3 epochs < the run's 4
    assert _snapshot(model_dir) == before


def test_run_ending_between_validation_points_is_not_extended(fake_data_dir, tmp_path):
    """Validation every 2 epochs, 3 epochs: epoch 3 was an extra (last-epoch) point that a
    fresh 5-epoch run would not have."""
    config = _with_distill(_config(fake_data_dir), validation_every_epochs=2)
    _run(config, tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    with pytest.raises(DistillError, match="between the validation points"):
        _run(_with_distill(config, epochs=5), tmp_path / "run")
    assert _snapshot(tmp_path / "run") == before


def test_runs_of_older_versions_are_judged_by_their_config(finished_run, fake_data_dir):
    """config.json written before run identities existed (no run_identity key, fewer keys)."""
    model_dir, _ = finished_run
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    for newer in ("run_identity", "transfer_repetitions", "step_offsets"):
        config.pop(newer)
    config_path.write_text(json.dumps(config))
    results = json.loads((model_dir / "results.json").read_text())
    results.pop("run_identity")
    (model_dir / "results.json").write_text(json.dumps(results))
    before = _snapshot(model_dir)
    with pytest.raises(DistillError, match="target"):
        _run(_config(fake_data_dir, target="fashion_mnist"), model_dir)
    assert _snapshot(model_dir) == before
    _run(_config(fake_data_dir), model_dir)  # the same run is accepted


def test_a_foreign_folder_where_the_set_goes_is_refused_before_any_work(fake_data_dir,
                                                                        tmp_path):
    model_dir = tmp_path / "run"
    (model_dir / "distilled_set").mkdir(parents=True)
    (model_dir / "distilled_set" / "notes.txt").write_text("mine")
    with pytest.raises(DistillError, match="is not a distilled set"):
        _run(_config(fake_data_dir), model_dir)
    assert sorted(os.listdir(model_dir)) == ["distilled_set"]
    assert (model_dir / "distilled_set" / "notes.txt").read_text() == "mine"


def test_legacy_checkpoint_format_is_refused(fake_data_dir, tmp_path):
    model_dir = tmp_path / "run"
    (model_dir / "checkpoint").mkdir(parents=True)
    (model_dir / "checkpoint" / "checkpoint.npz").write_bytes(b"old")
    with pytest.raises(DistillError, match="format of kerasdistill 0.1"):
        _run(_config(fake_data_dir), model_dir)
    assert sorted(os.listdir(model_dir)) == ["checkpoint"]


# --- checkpoints ----------------------------------------------------------------------

_SAVER = r"""
import sys
import tensorflow as tf
from kerasdistill.training.adam import adam_init
from kerasdistill.distill.checkpoint import RunCheckpoint
from kerasdistill.distill.meta_step import MetaState

directory, first = sys.argv[1], int(sys.argv[2])
checkpoint = RunCheckpoint(directory)
for k in range(first, first + 100000):
    value = float(k)
    big = tf.fill([400_000], value)  # ~1.6 MB per tensor: kills land inside writes
    state = MetaState(tf.fill([10, 10], value), adam_init([tf.zeros([10, 10])]), (big, big + 1))
    checkpoint.save(state, tf.fill([10, 10], value), {"k": k}, number=k)
    print(k, flush=True)
"""


def _template():
    import tensorflow as tf

    from kerasdistill.distill.meta_step import MetaState
    from kerasdistill.training.adam import adam_init
    zeros = tf.zeros([400_000])
    return MetaState(tf.zeros([10, 10]), adam_init([tf.zeros([10, 10])]), (zeros, zeros))


def test_sigkill_at_any_instant_leaves_a_whole_checkpoint(tmp_path):
    from kerasdistill.distill.checkpoint import RunCheckpoint
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    directory = str(tmp_path / "checkpoint")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    first = 0
    for delay in (0.05, 0.13, 0.31, 0.02):
        saver = subprocess.Popen([sys.executable, str(script), directory, str(first)],
                                 stdout=subprocess.PIPE, text=True, env=env)
        acknowledged = int(saver.stdout.readline())  # one save done: TF is up
        time.sleep(delay)
        os.kill(saver.pid, signal.SIGKILL)
        remaining = saver.stdout.read().split()
        saver.wait()
        if remaining:
            acknowledged = int(remaining[-1])
        state, best, progress = RunCheckpoint(directory).restore(_template())
        k = progress["k"]
        assert k in (acknowledged, acknowledged + 1)  # the last finished save, or the one in flight
        for tensor in [*state.learner, state.soft_labels]:
            expected = k + 1 if tensor is state.learner[1] else k
            assert np.all(tensor.numpy() == expected)
        assert np.all(best == k)
        first = k + 1


def test_corrupt_newest_checkpoint_falls_back_to_the_one_before(fake_data_dir, tmp_path,
                                                                caplog):
    reference = _run(_config(fake_data_dir), tmp_path / "reference")
    model_dir = tmp_path / "run"
    _run(_config(fake_data_dir), model_dir)
    (model_dir / "results.json").unlink()
    newest = model_dir / "checkpoint" / "ckpt-3.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        resumed = _run(_config(fake_data_dir), model_dir)
    assert any("ckpt-3" in record.getMessage() and "cannot be read" in record.getMessage()
               for record in caplog.records)
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["labels"] == reference["labels"]
    assert resumed["test_accuracies"] == reference["test_accuracies"]


def test_no_readable_checkpoint_is_a_clear_error(finished_run, fake_data_dir):
    model_dir, _ = finished_run
    for name in os.listdir(model_dir / "checkpoint"):
        if name.startswith("ckpt-") and ".data-" in name:
            (model_dir / "checkpoint" / name).write_bytes(b"")
    before = _snapshot(model_dir)
    with pytest.raises(DistillError, match="ckpt-3") as error:
        _run(_config(fake_data_dir), model_dir)
    assert "checkpoint" in str(error.value)
    assert _snapshot(model_dir) == before


def test_injected_nan_stops_the_run_naming_the_step(fake_data_dir, tmp_path, monkeypatch):
    real_adam = meta_step.adam_update

    def nan_labels_at_step_11(params, grads, state, *args, **kwargs):
        # The labels' Adam step count is the global step before this one.
        new_params, new_state = real_adam(params, grads, state, *args, **kwargs)
        poisoned = tf.where(tf.equal(state.step, 10.0), np.nan, new_params[0])
        return (poisoned, *new_params[1:]), new_state

    monkeypatch.setattr(meta_step, "adam_update", nan_labels_at_step_11)
    model_dir = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"meta step 11 \(epoch 2\) gave a non-finite "
                                             r"labels") as error:
        _run(_config(fake_data_dir), model_dir)
    assert "checkpoint of epoch 1 is kept" in str(error.value)
    assert not (model_dir / "results.json").exists()
    assert sorted(n for n in os.listdir(model_dir / "checkpoint") if n.endswith(".index")) == [
        "ckpt-1.index"]


# --- bad input on the command line ------------------------------------------------------


def _distill_tiny(data_dir, model_dir):
    return run_cli("experiments.distill", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                "--num_validation=100", "--num_base_examples=10", "--inner_batch_size=5",
                "--epochs=1", "--outer_batch_size=64", "--test_repetitions=1")


def _bad_npz(kind, path):
    if kind == "text":
        path.write_text("x_train,y_train\n1,2\n")
    elif kind == "truncated":
        write_fake_npz(str(path))
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif kind == "undecompressable":
        arrays = dict(np.load(write_fake_npz(str(path))))
        np.savez_compressed(path, **arrays)
        payload = bytearray(path.read_bytes())
        middle = len(payload) // 3
        payload[middle:middle + 64] = bytes(64)  # inside x_train's deflate stream
        path.write_bytes(bytes(payload))


@pytest.mark.parametrize("kind,message", [
    ("text", "is not a readable .npz file"),
    ("truncated", "is not a readable .npz file"),
    ("undecompressable", "cannot read"),
])
def test_damaged_data_files_exit_2_before_writing(tmp_path, kind, message):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _bad_npz(kind, data_dir / "mnist.npz")
    result = _distill_tiny(data_dir, tmp_path / "run")
    assert_one_error(result, message)
    assert not (tmp_path / "run").exists()


def test_model_dir_under_a_file_exits_2(fake_data_dir, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    result = _distill_tiny(fake_data_dir, tmp_path / "a_file" / "run")
    assert_one_error(result, "is a file, not a folder")


def test_model_dir_that_cannot_be_created_exits_2(fake_data_dir):
    target = "/sys/kerasdistill_cannot_write_here"
    if os.path.exists(target) or not os.path.isdir("/sys"):
        pytest.skip("needs /sys, where nobody (not even root) may create folders")
    result = _distill_tiny(fake_data_dir, target)
    assert_one_error(result, "kerasdistill_cannot_write_here")
    assert not os.path.exists(target)


def test_a_folder_another_process_runs_in_is_refused_and_freed_when_it_dies(fake_data_dir,
                                                                             tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from kerasdistill.files import exclusive_folder\n"
         f"with exclusive_folder({str(folder)!r}):\n"
         "    print('held', flush=True)\n    time.sleep(120)\n"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(folder)
        with pytest.raises(DistillError, match=f"in use by another process \\(pid "
                                               f"{holder.pid}\\)"):
            _run(_config(fake_data_dir), folder)
        assert _snapshot(folder) == before  # refused before anything was written
    finally:
        holder.kill()  # a killed holder leaves no stale lock behind
        holder.wait()
    config = _config(fake_data_dir)
    results = _run(config, folder)
    assert len(results["test_accuracies"]) == config.test_repetitions


def test_a_run_started_in_the_folder_before_the_lock_is_taken_is_refused(fake_data_dir,
                                                                          tmp_path,
                                                                          monkeypatch):
    """The read-only checks pass on an empty folder; another run writes its config.json
    before this process locks the folder: the check repeated under the lock refuses."""
    import kerasdistill.experiment as experiment
    folder = tmp_path / "run"
    other_settings = to_json_dict(resolve(_config(fake_data_dir, target="fashion_mnist")))
    real_prepare = experiment.prepare_output_dir

    def prepare_then_another_run_writes(path, *args):
        real_prepare(path, *args)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(other_settings, f)
        return path

    monkeypatch.setattr(experiment, "prepare_output_dir", prepare_then_another_run_writes)
    with pytest.raises(DistillError, match="holds a run"):
        _run(_config(fake_data_dir), folder)
    assert sorted(os.listdir(folder)) == [".run.lock", "config.json"]
    with open(folder / "config.json") as f:  # the other run's file is left as it was
        assert f.read() == json.dumps(other_settings)


def test_a_file_system_without_locks_gives_one_error(tmp_path, monkeypatch):
    import errno
    import fcntl

    from kerasdistill.files import check_not_in_use, exclusive_folder, folder_held_briefly

    def no_locks_here(descriptor, mode):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks_here)
    with pytest.raises(DistillError, match="may not support file locks"):
        with exclusive_folder(str(tmp_path)):
            pytest.fail("the block must not run without the lock")
    with pytest.raises(DistillError, match="may not support file locks"):
        check_not_in_use(str(tmp_path))  # the lock file exists now
    with pytest.raises(DistillError, match="may not support file locks"):
        with folder_held_briefly(str(tmp_path)):
            pytest.fail("the block must not run without the lock")
    with pytest.raises(DistillError, match="cannot open --output_dir=.*nowhere"):
        with folder_held_briefly(str(tmp_path / "nowhere")):
            pytest.fail("the block must not run without the lock")


def test_a_lock_file_that_cannot_be_opened_gives_one_error(tmp_path):
    from kerasdistill.files import LOCK_FILE, exclusive_folder
    os.mkdir(tmp_path / LOCK_FILE)  # a folder where the lock file goes: fails for root too
    with pytest.raises(DistillError, match=f"cannot open --model_dir=.*{LOCK_FILE}: Is a dir"):
        with exclusive_folder(str(tmp_path)):
            pytest.fail("the block must not run without the lock")
