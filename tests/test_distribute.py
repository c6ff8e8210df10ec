"""The outer loop spread over devices (kerasdistill.distribute)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from kerasdistill.distill.loop import DistillConfig
from kerasdistill.distribute import make_strategy
from kerasdistill.errors import DistillError
from tests.conftest import REPO_ROOT, assert_one_error, run_cli
from tests.scripts.tiny_distillation import distill_tiny


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}


def test_mirrored_on_two_logical_cpu_devices_equals_one_device():
    done = subprocess.run([sys.executable, "tests/scripts/mirrored_equals_one_device.py",
                           "second_order", "ridge_regression"], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.split("REPORT ", 1)[1])
    assert len(report["devices"]) == 2
    for algorithm in ("second_order", "ridge_regression"):
        result = report[algorithm]
        # Each replica's mean over half the batch, then their mean: the same sum in
        # another order, so float32 rounding only.
        assert result["max_label_difference"] < 1e-6, result
        assert result["best_label_difference"] < 1e-6, result
        one, mirrored = result["reset_points"]
        assert one == mirrored and one, result
        assert result["meta_steps"][0] == result["meta_steps"][1] == 40
        assert result["num_train_steps"][0] == result["num_train_steps"][1]
    assert "must divide evenly over the 2 replicas" in report["odd_batch_error"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_two_localhost_workers_equal_one_device(tmp_path):
    ports = [str(_free_port()), str(_free_port())]
    env = {key: value for key, value in ENV.items() if key != "TF_CONFIG"}
    workers = [subprocess.Popen(
        [sys.executable, "tests/scripts/multi_worker_run.py", *ports, str(index),
         str(tmp_path / f"labels_{index}.npy")], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    one = distill_tiny("second_order")
    for index, (stdout, _) in enumerate(outputs):
        report = json.loads(stdout.split("REPORT ", 1)[1])
        assert report["reset_points"] == one.reset_points and one.reset_points
        assert report["meta_steps"] == one.meta_steps
        labels = np.load(tmp_path / f"labels_{index}.npy")
        assert np.abs(labels - one.final_soft_labels).max() < 1e-6


def test_unknown_distribution_is_refused():
    with pytest.raises(DistillError, match="distribute must be one of"):
        DistillConfig(num_base_examples=10, inner_batch_size=5, distribute="tpu")
    with pytest.raises(DistillError, match="distribute must be one of"):
        make_strategy("everywhere")
    with pytest.raises(DistillError, match="jit_compile=True with distribute"):
        DistillConfig(num_base_examples=10, inner_batch_size=5, distribute="mirrored",
                      jit_compile=True)


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DistillError, match="TF_CONFIG"):
        make_strategy("multi_worker")


def test_no_distribution_is_no_strategy():
    assert make_strategy("none") is None


def test_multi_worker_is_refused_by_the_command_with_the_reason(tmp_path):
    result = run_cli("experiments.distill", "--distribute=multi_worker",
                     f"--model_dir={tmp_path / 'run'}")
    assert_one_error(result, "--distribute=multi_worker is not supported by experiments.distill")
    assert not (tmp_path / "run").exists()
