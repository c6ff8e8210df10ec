"""Bad input to the entry points: one clear message, exit status 2, no traceback."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _distill(*args, data_dir):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    return subprocess.run(
        [sys.executable, "-m", "experiments.distill", f"--data_dir={data_dir}", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["--num_base_examples=10", "--inner_batch_size=20"], "inner_batch_size=20 is larger"),
    (["--num_base_examples=15", "--inner_batch_size=5"], "divisible by the 10 classes"),
    (["--target=mnits"], "unknown dataset 'mnits'"),
    (["--epochs=0"], "epochs must be a whole number >= 1, got 0"),
    (["--epochs=-3"], "epochs must be a whole number >= 1, got -3"),
    (["--test_repetitions=0"], "test_repetitions must be a whole number >= 1"),
    (["--seed=-3"], "seed must be a whole number in [0, 2^31), got -3"),
    (["--target=kmnist"], "kmnist.npz was not found"),
    (["--baseline=true_labels", "--source=fashion_mnist"], "drop --source"),
])
def test_bad_input_exits_with_one_clear_message(fake_data_dir, tmp_path, args, message):
    result = _distill(f"--model_dir={tmp_path / 'out'}", "--num_validation=100", *args,
                      data_dir=fake_data_dir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr[-2000:]


def test_a_value_outside_an_options_choices_is_refused_by_its_flag(fake_data_dir, tmp_path):
    """Choice options are enum flags (their choices come from kerasdistill/config.py): absl
    refuses another value as it parses, naming the choices, before anything runs."""
    result = _distill(f"--model_dir={tmp_path / 'out'}", "--algorithm=third_order",
                      data_dir=fake_data_dir)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--algorithm=third_order: value should be one of <second_order|ridge_regression>" \
        in result.stderr
    assert not (tmp_path / "out").exists()


def test_model_dir_is_required(fake_data_dir):
    result = _distill(data_dir=fake_data_dir)
    assert result.returncode == 2 and "--model_dir is required" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_enum_flag_is_rejected_by_absl(fake_data_dir, tmp_path):
    result = _distill(f"--model_dir={tmp_path}", "--baseline=oracle", data_dir=fake_data_dir)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "baseline" in result.stderr
