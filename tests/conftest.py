"""Shared fixtures: tiny data, and the real datasets when ../shared/data has them."""

from __future__ import annotations

import os

import numpy as np
import pytest

import kerasdistill  # noqa: F401  (first: it turns oneDNN on before TensorFlow is imported)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("KERASDISTILL_DATA_DIR",
                             os.path.join(os.path.dirname(REPO_ROOT), "shared", "data"))


@pytest.fixture
def shared_data_dir():
    """The folder of real .npz datasets; skips the test when MNIST is not there."""
    if not os.path.exists(os.path.join(SHARED_DATA, "mnist.npz")):
        pytest.skip(f"real MNIST not available at {SHARED_DATA}/mnist.npz "
                    f"(set KERASDISTILL_DATA_DIR to a folder holding it)")
    return SHARED_DATA


def write_fake_npz(path: str, num_train: int = 600, num_test: int = 200, shape=(28, 28),
                   num_classes: int = 10, seed: int = 0, label_offset: int = 0):
    """A small Keras-layout dataset whose classes are learnable (class-dependent blobs)."""
    rng = np.random.default_rng(seed)

    def make(count):
        labels = rng.integers(0, num_classes, count)
        images = rng.integers(0, 60, (count, *shape)).astype(np.float32)
        for index, label in enumerate(labels):
            row = 2 + 2 * (label % 10)
            images[index, row:row + 4, 4:24] += 180
        return np.clip(images, 0, 255).astype(np.uint8), (labels + label_offset).astype(np.int64)

    x_train, y_train = make(num_train)
    x_test, y_test = make(num_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture
def fake_data_dir(tmp_path):
    """A folder holding a small learnable fake mnist.npz and fashion_mnist.npz."""
    write_fake_npz(str(tmp_path / "mnist.npz"))
    write_fake_npz(str(tmp_path / "fashion_mnist.npz"), seed=1)
    return str(tmp_path)


def run_cli(module: str, *args, timeout: int = 600):
    """Runs `python -m module args...` from the checkout, as a user would."""
    import subprocess
    import sys
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error(result, message: str):
    """Exit status 2, no traceback, exactly one `error: ...` line, containing `message`."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]


def tiny_config(data_dir, num_base_examples=10, inner_batch_size=5, epochs=3, seed=7,
                test_repetitions=2, **changes):
    """An ExperimentConfig small enough for a test: fake MNIST, 64-image outer batches,
    validation every epoch, reset window 3, float32."""
    import dataclasses

    from kerasdistill.distill.loop import DistillConfig
    from kerasdistill.experiment import ExperimentConfig
    distill = DistillConfig(num_base_examples=num_base_examples,
                            inner_batch_size=inner_batch_size, epochs=epochs,
                            outer_batch_size=64, seed=seed, validation_every_epochs=1,
                            reset_window=3)
    config = ExperimentConfig(distill=distill, target="mnist", test_repetitions=test_repetitions,
                              data_dir=data_dir, num_validation=100, outer_precision="float32")
    return dataclasses.replace(config, **changes)


def make_finished_runs(root, variants: dict, **config_kwargs):
    """Tiny finished runs on fake MNIST under `root`, one per {name: config changes};
    returns (data_dir, {name: (model_dir, results)})."""
    from kerasdistill.experiment import run_experiment
    data_dir = os.path.join(str(root), "data")
    os.makedirs(data_dir)
    write_fake_npz(os.path.join(data_dir, "mnist.npz"))
    runs = {}
    for name, changes in variants.items():
        model_dir = os.path.join(str(root), name)
        config = tiny_config(data_dir, **config_kwargs, **changes)
        runs[name] = (model_dir, run_experiment(config, model_dir, verbose=False))
    return data_dir, runs


def assert_refused_before_any_work(tmp_path, message: str, **changes):
    """`tiny_config` with `changes` is refused with `message` (by the config as it is made,
    or by `run_experiment`), before any data is read or any file written."""
    from kerasdistill.errors import DistillError
    from kerasdistill.experiment import run_experiment
    with pytest.raises(DistillError, match=message):
        config = tiny_config(str(tmp_path / "no_data_here"), **changes)
        run_experiment(config, str(tmp_path / "run"), verbose=False)
    assert not (tmp_path / "run").exists()


def run_folder_without_its_set(model_dir, copy) -> str:
    """A copy of a finished run with config.json and results.json only (as committed runs
    and runs made before sets existed are), so export has to rebuild its set."""
    import shutil
    os.makedirs(copy, exist_ok=True)
    for name in ("config.json", "results.json"):
        shutil.copy(os.path.join(model_dir, name), os.path.join(copy, name))
    return str(copy)
