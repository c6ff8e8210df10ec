"""Datasets of which a machine holds one split (issue 26, item 1): EMNIST letters' training
split, KMNIST's official test files; a source needs only its training split, a target
both, or an explicit re-split of its test split."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from kerasdistill.data.loading import load_dataset
from kerasdistill.data.resplit import as_target, resplit_test
from kerasdistill.data.splits import split_target
from kerasdistill.errors import DataNotFoundError, DistillError
from tests.conftest import (SHARED_DATA, assert_one_error, run_cli, run_folder_without_its_set,
                            tiny_config, write_fake_npz)


def _sha(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _real(*files):
    missing = [f for f in files if not os.path.exists(os.path.join(SHARED_DATA, f))]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in {SHARED_DATA} (SOURCES.md there says where "
                    f"each comes from; set KERASDISTILL_DATA_DIR to a folder holding them)")
    return SHARED_DATA


KMNIST_FILES = ("kmnist-test-imgs.npz", "kmnist-test-labels.npz")


# ---------------------------------------------------------------- the real files
def test_real_emnist_letters_is_a_training_split_as_stored():
    raw = load_dataset("emnist_letters", _real("emnist_letters.npz"))
    assert raw.splits == ("train",) and raw.test_images is None
    assert raw.train_images.shape == (124_800, 28, 28, 1)
    # Labels 1..26 in the file, 0..25 here; 4,800 a class; the first ten read w g p o w q
    # m k v x (SOURCES.md).
    assert np.bincount(raw.train_labels).tolist() == [4800] * 26
    assert "".join(raw.spec.class_names[c] for c in raw.train_labels[:10]) == "wgpowqmkvx"
    assert abs(raw.train_images.mean() / 255 - 0.17223) < 1e-4
    # Orientation: as stored (transposed, what torchvision gave the paper's runs) by
    # default, upright on request; a fingerprint of each pins which one a run sees.
    assert _sha(raw.train_images[:10]) == "33d58773dd8c34b1"
    upright = load_dataset("emnist_letters", SHARED_DATA, orientation="upright")
    assert _sha(upright.train_images[:10]) == "7525148c66397db4"
    np.testing.assert_array_equal(upright.train_images[:10],
                                  raw.train_images[:10].transpose(0, 2, 1, 3))


def test_real_kmnist_reads_its_official_test_files():
    raw = load_dataset("kmnist", _real(*KMNIST_FILES))
    assert raw.splits == ("test",) and raw.train_images is None
    assert raw.origin == "+".join(KMNIST_FILES)
    assert raw.test_images.shape == (10_000, 28, 28, 1)
    assert np.bincount(raw.test_labels).tolist() == [1000] * 10
    assert raw.test_labels[:10].tolist() == [2, 9, 3, 8, 3, 3, 8, 3, 2, 5]
    assert _sha(raw.test_images[:10]) == "b9376538df3ceb68"
    assert abs(raw.test_images.mean() / 255 - 0.18456) < 1e-4


def test_real_kmnist_re_split_is_stratified_fixed_and_disjoint():
    raw = load_dataset("kmnist", _real(*KMNIST_FILES))
    first, second = as_target(raw, "from_test"), as_target(raw, "from_test")
    assert first.resplit == second.resplit  # the same cut every time, for every run
    np.testing.assert_array_equal(first.test_images, second.test_images)
    assert first.resplit["sizes"] == {"train": 7000, "test": 3000}
    assert first.resplit["default_validation"] == 1000
    assert first.resplit["train_positions_sha256"] == "6e2021fec43b518a"
    assert first.resplit["test_positions_sha256"] == "8e0aec0e1bd0b061"
    assert np.bincount(first.test_labels).tolist() == [300] * 10
    assert np.bincount(first.train_labels).tolist() == [700] * 10
    # Every official test image lands in exactly one part, with its own label.
    def images_and_labels(images, labels):
        return sorted(_sha(image) + str(label) for image, label in zip(images, labels))
    assert images_and_labels(np.concatenate([first.train_images, first.test_images]),
                             np.concatenate([first.train_labels, first.test_labels])) == \
        images_and_labels(raw.test_images, raw.test_labels)
    # The run's seed draws validation from the 7,000; the 3,000 test images stay.
    for seed in (0, 1234):
        splits = split_target(first, seed)
        assert (len(splits.train_images), len(splits.validation_images),
                len(splits.test_images)) == (6000, 1000, 3000)
    assert not np.array_equal(split_target(first, 0).validation_positions,
                              split_target(first, 1234).validation_positions)


# ---------------------------------------------------------------- made-up files
def _one_split_npz(path, split, num=300, seed=0, num_classes=10, label_offset=0):
    write_fake_npz(str(path) + ".full.npz", num_train=num, num_test=num, seed=seed,
                   num_classes=num_classes, label_offset=label_offset)
    with np.load(str(path) + ".full.npz") as full:
        np.savez(path, **{f"x_{split}": full[f"x_{split}"], f"y_{split}": full[f"y_{split}"]})
    os.remove(str(path) + ".full.npz")


def test_a_file_of_one_split_loads_and_names_the_split_it_lacks(tmp_path):
    _one_split_npz(tmp_path / "mnist.npz", "train")
    raw = load_dataset("mnist", str(tmp_path))
    assert raw.splits == ("train",)
    with pytest.raises(DataNotFoundError, match="mnist .mnist.npz. has no test split, which "
                                                "the target .* needs.*--source only"):
        as_target(raw)
    _one_split_npz(tmp_path / "mnist.npz", "test")
    with pytest.raises(DataNotFoundError, match="has no train split.*--target_split=from_test"):
        as_target(load_dataset("mnist", str(tmp_path)))
    np.savez(tmp_path / "mnist.npz", x_test=np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(DistillError, match=r"lacks the arrays \['y_test'\]"):
        load_dataset("mnist", str(tmp_path))


def test_kmnist_official_files_count_by_whole_split(tmp_path):
    images = np.zeros((20, 28, 28), np.uint8)
    np.savez(tmp_path / "kmnist-test-imgs.npz", images)
    with pytest.raises(DataNotFoundError, match="kmnist-test-labels.npz.*rois-codh"):
        load_dataset("kmnist", str(tmp_path))  # half a split is no split: on to TFDS
    np.savez(tmp_path / "kmnist-test-labels.npz", np.arange(20) % 10)
    raw = load_dataset("kmnist", str(tmp_path))
    assert raw.splits == ("test",) and len(raw.test_labels) == 20


def test_the_re_split_is_seeded_stratified_and_recorded(tmp_path):
    _one_split_npz(tmp_path / "kmnist.npz", "test", num=1000)
    raw = load_dataset("kmnist", str(tmp_path))
    cut = resplit_test(raw)
    counts = np.bincount(raw.test_labels)
    np.testing.assert_array_equal(np.bincount(cut.test_labels),
                                  np.round(0.3 * counts).astype(int))
    assert cut.resplit["default_validation"] == 100
    assert sum(cut.resplit["sizes"].values()) == 1000
    assert cut.resplit["official_train_split_unused"] is False
    assert "re-split" in cut.origin and cut.resplit["origin"] == "kmnist.npz"
    # Data that hold a training split may be re-split all the same (the plan's KMNIST runs
    # give the same numbers on a machine with its training files): recorded as unused.
    write_fake_npz(str(tmp_path / "kmnist.npz"), num_train=100, num_test=1000)
    again = as_target(load_dataset("kmnist", str(tmp_path)), "from_test")
    assert again.resplit["official_train_split_unused"] is True
    with pytest.raises(DistillError, match="target_split must be one of"):
        as_target(raw, "from_train")
    _one_split_npz(tmp_path / "kmnist.npz", "test", num=5)
    with pytest.raises(DistillError, match="too small to re-split"):
        resplit_test(load_dataset("kmnist", str(tmp_path)))


def test_a_training_split_alone_serves_as_source_and_teacher_input(tmp_path):
    """EMNIST letters as they are here: a source for LD, the class mapping and the teacher."""
    from kerasdistill.experiment import run_experiment
    write_fake_npz(str(tmp_path / "mnist.npz"))
    _one_split_npz(tmp_path / "emnist_letters.npz", "train", num=400, num_classes=26,
                   label_offset=1)
    for baseline in ("class_mapping", "teacher"):
        config = tiny_config(str(tmp_path), source="emnist_letters", baseline=baseline,
                             teacher_epochs=1, teacher_temperatures=(1.0,),
                             baseline_max_steps=20)
        results = run_experiment(config, str(tmp_path / baseline), verbose=False)
        assert 0.0 <= results["test_accuracy_mean"] <= 1.0
        assert results["target_resplit"] is None


def test_a_re_split_target_runs_exports_and_trains_on_its_own_test_images(tmp_path):
    """Within KMNIST on a made-up test file: config, results and the set's metadata say
    how the splits were made, and experiments.train tests on the re-split's test images."""
    _one_split_npz(tmp_path / "kmnist.npz", "test", num=1000)
    model_dir = tmp_path / "run"
    done = run_cli("experiments.distill", "--target=kmnist", "--target_split=from_test",
                   "--num_base_examples=10", "--inner_batch_size=5", "--epochs=1",
                   "--outer_batch_size=64", "--test_repetitions=2", "--outer_precision=float32",
                   f"--data_dir={tmp_path}", f"--model_dir={model_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((model_dir / "config.json").read_text())
    results = json.loads((model_dir / "results.json").read_text())
    metadata = json.loads((model_dir / "distilled_set" / "distilled_set.json").read_text())
    assert config["target_split"] == "from_test"
    sizes = results["target_resplit"]["sizes"]  # 30 % of each class, rounded, for testing
    assert results["target_resplit"]["default_validation"] == 100
    assert sum(sizes.values()) == 1000 and abs(sizes["test"] - 300) <= 5
    assert metadata["target_split"] == "from_test"
    assert metadata["target_resplit"] == results["target_resplit"]
    assert "re-split" in results["target_origin"]
    assert metadata["source_split"] == "train of the re-split test split"
    # A rebuilt set finds the base images in the re-split's training part.
    rebuilt = run_folder_without_its_set(model_dir, tmp_path / "run_without_set")
    exported = run_cli("experiments.export", f"--model_dir={rebuilt}",
                       f"--output_dir={tmp_path / 'exported'}", "--plots_dir=",
                       f"--data_dir={tmp_path}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    with np.load(model_dir / "distilled_set" / "distilled_set.npz") as made, \
            np.load(tmp_path / "exported" / "distilled_set.npz") as again:
        np.testing.assert_array_equal(made["images"], again["images"])
    trained = run_cli("experiments.train", f"--distilled={model_dir / 'distilled_set'}",
                      f"--data_dir={tmp_path}", "--repetitions=1", "--verbose=false",
                      f"--output_json={tmp_path / 'train' / 'results.json'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    train_results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert len(train_results["test_accuracies"]) == 1
    assert "re-split" in train_results["target_origin"]
    # Other data with the same name: their re-split picks other images, and it is refused.
    _one_split_npz(tmp_path / "kmnist.npz", "test", num=1000, seed=5)
    refused = run_cli("experiments.train", f"--distilled={model_dir / 'distilled_set'}",
                      f"--data_dir={tmp_path}", "--repetitions=1", "--verbose=false")
    assert_one_error(refused, "differs from the one the set was made with")


def test_a_target_without_a_split_is_refused_before_anything_is_written(tmp_path):
    _one_split_npz(tmp_path / "kmnist.npz", "test")
    _one_split_npz(tmp_path / "emnist_letters.npz", "train", num_classes=26, label_offset=1)
    for target, message in (("kmnist", "has no train split.*--target_split=from_test"),
                            ("emnist_letters", "has no test split.*--source only")):
        config = tiny_config(str(tmp_path), target=target)
        from kerasdistill.experiment import run_experiment
        with pytest.raises(DataNotFoundError, match=message):
            run_experiment(config, str(tmp_path / target), verbose=False)
        assert not (tmp_path / target).exists()
    # A source that lacks its training split (KMNIST here) cannot give base images.
    write_fake_npz(str(tmp_path / "mnist.npz"))
    with pytest.raises(DataNotFoundError, match="has no train split, which a source"):
        run_experiment(tiny_config(str(tmp_path), source="kmnist"), str(tmp_path / "s"),
                       verbose=False)
    assert not (tmp_path / "s").exists()
