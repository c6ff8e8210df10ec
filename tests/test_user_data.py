"""A user's own dataset given as a path (issue 26, item 2): read, checked, normalised from
its training split, and carried through distill, export, load_distilled and train."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kerasdistill.data.loading import load_dataset
from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.data.user_data import is_dataset_path
from kerasdistill.errors import DistillError
from tests.conftest import assert_one_error, run_cli


def _shapes(num, num_classes=4, size=20, channels=None, seed=0):
    """Learnable made-up images: class c is a bright band at rows 2 + 4c."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 50, (num, size, size)).astype(np.uint8)
    for index, label in enumerate(labels):
        images[index, 2 + 4 * label:5 + 4 * label, 3:size - 3] = 220
    if channels:
        images = np.repeat(images[..., None], channels, axis=-1)
    return images, labels.astype(np.int64)


def _write(path, train=800, test=200, **kwargs):
    x_train, y_train = _shapes(train, seed=0, **kwargs)
    x_test, y_test = _shapes(test, seed=1, **kwargs)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


def test_paths_and_names_are_told_apart():
    assert is_dataset_path("mine.npz") and is_dataset_path("./folder")
    assert is_dataset_path("data/x") and not is_dataset_path("mnist")
    with pytest.raises(DistillError, match="unknown dataset 'mnsit'.*a path to your own"):
        get_dataset_spec("mnsit")


def test_a_file_gives_its_own_shape_classes_and_normalisation(tmp_path):
    path = _write(tmp_path / "colour.npz", channels=3, size=24)
    (tmp_path / "colour.classes.txt").write_text("up\nmiddle\nlower\nbottom\n")
    spec = get_dataset_spec(path)
    assert spec.image_shape == (24, 24, 3) and spec.num_classes == 4
    assert spec.class_names == ("up", "middle", "lower", "bottom")
    assert spec.num_validation == 80  # 10 % of the 800 training images
    with np.load(path) as arrays:
        pixels = arrays["x_train"].astype(np.float64) / 255
    np.testing.assert_allclose(spec.mean, pixels.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(spec.std, pixels.std(axis=(0, 1, 2)), rtol=1e-12)
    raw = load_dataset(path)
    assert raw.train_images.shape == (800, 24, 24, 3) and raw.test_labels.dtype == np.int64
    assert raw.origin == f"colour.npz (sha256 {spec.fingerprint})" and "/" not in raw.origin


def test_a_folder_joins_its_files_in_name_order(tmp_path):
    folder = tmp_path / "letters"
    folder.mkdir()
    x_train, y_train = _shapes(400)
    x_test, y_test = _shapes(100, seed=3)
    np.savez(folder / "a_train.npz", x_train=x_train[:300], y_train=y_train[:300])
    np.savez(folder / "b_train.npz", x_train=x_train[300:], y_train=y_train[300:])
    np.savez(folder / "c_test.npz", x_test=x_test, y_test=y_test)
    raw = load_dataset(str(folder))
    np.testing.assert_array_equal(raw.train_images[..., 0], x_train)
    np.testing.assert_array_equal(raw.test_labels, y_test)
    assert get_dataset_spec(str(folder)).class_names == ()
    (folder / "classes.txt").write_text("w\nx\ny\nz\n")  # a new sidecar is read at once
    assert get_dataset_spec(str(folder)).class_name_list() == ["w", "x", "y", "z"]


def _bad(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _cases(tmp_path):
    x, y = _shapes(200)
    return {
        "x_train is float32; images must be uint8":
            _bad(tmp_path, "float.npz", x_train=x.astype(np.float32), y_train=y,
                 x_test=x, y_test=y),
        r"has shape \(200, 20, 20, 2\); expected \[N, H, W\]":
            _bad(tmp_path, "channels.npz", x_train=np.repeat(x[..., None], 2, -1), y_train=y,
                 x_test=x, y_test=y),
        "is float64; labels must be integers":
            _bad(tmp_path, "float_labels.npz", x_train=x, y_train=y.astype(float), x_test=x,
                 y_test=y),
        "holds the label -1; labels must be 0..K-1":
            _bad(tmp_path, "negative.npz", x_train=x, y_train=np.where(y == 0, -1, y),
                 x_test=x, y_test=y),
        r"classes 4 \(1 of 5\) are missing from the training split":
            _bad(tmp_path, "test_only_class.npz", x_train=x, y_train=y, x_test=x,
                 y_test=np.where(y == 0, 4, y)),
        r"classes 1 \(1 of 4\) are missing from the training split":
            _bad(tmp_path, "gap.npz", x_train=x, y_train=np.where(y == 1, 3, y), x_test=x,
                 y_test=y),
        "200 train images but 199 labels":
            _bad(tmp_path, "counts.npz", x_train=x, y_train=y[:-1], x_test=x, y_test=y),
        r"test images have shape \(24, 24, 1\), other images of the dataset \(20, 20, 1\)":
            _bad(tmp_path, "sizes.npz", x_train=x, y_train=y,
                 x_test=_shapes(10, size=24)[0], y_test=y[:10]),
        "has no training split": _bad(tmp_path, "no_train.npz", x_test=x, y_test=y),
        r"lacks the arrays \['y_train'\]": _bad(tmp_path, "half.npz", x_train=x),
        "does not exist": str(tmp_path / "nowhere.npz"),
    }


def test_every_bad_file_gets_one_clear_error(tmp_path):
    for message, path in _cases(tmp_path).items():
        with pytest.raises(DistillError, match=message):
            get_dataset_spec(path)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(DistillError, match="holds no .npz file"):
        get_dataset_spec(str(empty))
    path = _write(tmp_path / "named.npz")
    (tmp_path / "named.classes.txt").write_text("one\ntwo\n")
    with pytest.raises(DistillError, match="names 2 classes; the labels have 4"):
        get_dataset_spec(path)


def test_bad_files_and_too_few_images_are_refused_before_anything_is_written(tmp_path):
    cases = _cases(tmp_path)
    small = _write(tmp_path / "small.npz", train=40, test=20)
    for path, message in ((cases["x_train is float32; images must be uint8"], "must be uint8"),
                          (small, "exceeds the 36 candidate images")):
        model_dir = tmp_path / f"run_{os.path.basename(path)}"
        result = run_cli("experiments.distill", f"--target={path}", "--num_base_examples=40",
                         "--epochs=1", f"--model_dir={model_dir}")
        assert_one_error(result, message)
        assert not model_dir.exists()


def test_own_data_distils_exports_loads_and_trains_end_to_end(tmp_path):
    """The commands of docs/commands.md ("Your own data") on a user's file, as a user runs
    them."""
    from kerasdistill import load_distilled
    path = _write(tmp_path / "mine.npz")
    (tmp_path / "mine.classes.txt").write_text("a\nb\nc\nd\n")
    model_dir = tmp_path / "run"
    done = run_cli("experiments.distill", f"--target={path}", "--num_base_examples=8",
                   "--epochs=2", "--outer_batch_size=128", "--test_repetitions=2",
                   f"--model_dir={model_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((model_dir / "config.json").read_text())
    results = json.loads((model_dir / "results.json").read_text())
    assert config["target"] == path and config["architecture"] == "lenet"
    spec = get_dataset_spec(path)
    assert results["target_origin"] == f"mine.npz (sha256 {spec.fingerprint})"
    exported = tmp_path / "exported"
    done = run_cli("experiments.export", f"--model_dir={model_dir}", f"--output_dir={exported}",
                   "--plots_dir=")
    assert done.returncode == 0, done.stderr[-3000:]
    distilled = load_distilled(str(exported))
    assert len(distilled) == 8 and distilled.metadata["class_names"] == ["a", "b", "c", "d"]
    assert distilled.metadata["target_fingerprint"] == spec.fingerprint
    np.testing.assert_allclose(distilled.metadata["mean"], spec.mean)
    trained = run_cli("experiments.train", f"--distilled={exported}", "--repetitions=2",
                      "--verbose=false", f"--output_json={tmp_path / 'train' / 'results.json'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    figures = json.loads((tmp_path / "train" / "results.json").read_text())
    assert len(figures["test_accuracies"]) == 2
    # The same path holding other arrays later: refused, not tested on.
    _write(tmp_path / "mine.npz", train=400)
    refused = run_cli("experiments.train", f"--distilled={exported}", "--repetitions=1",
                      "--verbose=false")
    assert_one_error(refused, "holds other arrays")


def test_a_users_data_is_one_run_by_its_contents_not_its_path(tmp_path, monkeypatch):
    from kerasdistill.distill.identity import check_model_dir, run_identity
    from kerasdistill.errors import DistillError
    from kerasdistill.experiment import resolve, run_experiment, to_json_dict
    from tests.conftest import tiny_config
    (tmp_path / "data").mkdir()
    _write(tmp_path / "data" / "mine.npz")
    monkeypatch.chdir(tmp_path)
    config = tiny_config(None, num_base_examples=8, epochs=1, target="data/mine.npz")
    same = tiny_config(None, num_base_examples=8, epochs=1, target="./data/mine.npz")
    identity = run_identity(to_json_dict(resolve(config)))
    assert identity == run_identity(to_json_dict(resolve(same)))
    assert identity["target"].startswith("mine.npz (sha256 ") and "data/" not in str(identity)
    results = run_experiment(config, str(tmp_path / "run"), verbose=False)
    assert results["user_data"]["target"]["file"] == "mine.npz"
    assert "data/" not in json.dumps({k: v for k, v in results.items()
                                      if k not in ("distilled_set", "plots")})
    # The same path holding other arrays is another run: refused, nothing changed.
    _write(tmp_path / "data" / "mine.npz", train=400)
    with pytest.raises(DistillError, match="begun on mine.npz .sha256 .*now holds"):
        check_model_dir(str(tmp_path / "run"), to_json_dict(resolve(config)))
    # Export, from the folder the run was made in (the run records the path as given).
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT, run_folder_without_its_set

    # A folder that must rebuild its set reads the file again: refused (the run's own set
    # holds its images and needs no file).
    run_folder_without_its_set(tmp_path / "run", tmp_path / "run_without_set")
    exported = subprocess.run(
        [sys.executable, "-m", "experiments.export", f"--model_dir={tmp_path / 'run_without_set'}",
         f"--output_dir={tmp_path / 'exported'}", "--plots_dir="], cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT},
        capture_output=True, text=True, timeout=600)
    assert_one_error(exported, "holds other arrays")
