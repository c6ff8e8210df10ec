"""Shared fixtures: tiny data, and the real datasets when ../shared/data has them."""

from __future__ import annotations

import os

import numpy as np
import pytest

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
