"""Data: registry, npz and TFDS loading, splits, normalisation, base examples, stream."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.data.loading import load_dataset
from kerasdistill.data.pipeline import epoch_index_batches, steps_per_epoch
from kerasdistill.data.registry import get_dataset_spec
from kerasdistill.data.splits import (adapt_images, normalize_images, select_base_examples,
                                      split_target)
from kerasdistill.errors import DistillError
from tests.conftest import write_fake_npz


def test_npz_loader_and_protocol_splits(fake_data_dir):
    raw = load_dataset("mnist", fake_data_dir)
    assert raw.train_images.shape == (600, 28, 28, 1) and raw.train_images.dtype == np.uint8
    assert raw.origin.endswith("mnist.npz")
    splits = split_target(raw, seed=1, num_validation=100)
    assert len(splits.train_images) == 500 and len(splits.validation_images) == 100
    # Disjoint, together the whole official train split, and seed-stable.
    both = np.concatenate([splits.train_positions, splits.validation_positions])
    assert sorted(both.tolist()) == list(range(600))
    again = split_target(raw, seed=1, num_validation=100)
    np.testing.assert_array_equal(again.validation_positions, splits.validation_positions)
    other = split_target(raw, seed=2, num_validation=100)
    assert not np.array_equal(other.validation_positions, splits.validation_positions)
    np.testing.assert_array_equal(splits.train_labels, raw.train_labels[splits.train_positions])
    assert splits.train_images.dtype == np.float32


def test_real_mnist_split_sizes_and_normalisation(shared_data_dir):
    raw = load_dataset("mnist", shared_data_dir)
    splits = split_target(raw, seed=1234)
    assert (len(splits.train_images), len(splits.validation_images),
            len(splits.test_images)) == (50_000, 10_000, 10_000)
    # The protocol's constants make the training pixels about zero-mean, unit-variance.
    assert abs(float(splits.train_images.mean())) < 0.01
    assert abs(float(splits.train_images.std()) - 1.0) < 0.01


def test_target_set_size_subsets_the_train_split(fake_data_dir):
    splits = split_target(load_dataset("mnist", fake_data_dir), seed=0, num_validation=100,
                          target_set_size=50)
    assert len(splits.train_images) == 50
    with pytest.raises(DistillError, match="target_set_size"):
        split_target(load_dataset("mnist", fake_data_dir), seed=0, num_validation=100,
                     target_set_size=10_000)


def test_normalisation_constants():
    grey = normalize_images(np.full((1, 2, 2, 1), 255, np.uint8), get_dataset_spec("mnist"))
    np.testing.assert_allclose(grey, (1 - 0.1307) / 0.3081, rtol=1e-6)


def test_balanced_selection_is_per_class_and_seed_stable():
    labels = np.random.default_rng(0).integers(0, 10, 5000)
    chosen = select_base_examples(labels, 100, 10, balanced=True, seed=1234)
    assert len(set(chosen.tolist())) == 100
    np.testing.assert_array_equal(np.bincount(labels[chosen], minlength=10), [10] * 10)
    np.testing.assert_array_equal(select_base_examples(labels, 100, 10, True, 1234), chosen)
    assert not np.array_equal(select_base_examples(labels, 100, 10, True, 1), chosen)


def test_unbalanced_selection_ignores_classes():
    labels = np.zeros(1000, np.int64)  # one class only: balanced selection would fail
    chosen = select_base_examples(labels, 30, 10, balanced=False, seed=0)
    assert len(set(chosen.tolist())) == 30


@pytest.mark.parametrize("n,message", [(15, "divisible by the 10 classes"),
                                       (0, "must be positive"), (10_000, "exceeds")])
def test_bad_selection_sizes(n, message):
    labels = np.random.default_rng(0).integers(0, 10, 500)
    with pytest.raises(DistillError, match=message):
        select_base_examples(labels, n, 10, balanced=True, seed=0)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DistillError, match="unknown dataset 'mnits'.*mnist"):
        load_dataset("mnits", None)


def test_missing_data_offline_names_the_file(tmp_path):
    with pytest.raises(DistillError) as error:
        load_dataset("mnist", str(tmp_path), download=False)
    message = str(error.value)
    assert str(tmp_path / "mnist.npz") in message and "--download" in message


def test_malformed_npz_files(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(DistillError, match="lacks the arrays"):
        load_dataset("mnist", str(tmp_path))
    write_fake_npz(str(tmp_path / "mnist.npz"), shape=(32, 32))
    with pytest.raises(DistillError, match="expected .28, 28, 1."):
        load_dataset("mnist", str(tmp_path))
    write_fake_npz(str(tmp_path / "mnist.npz"), num_classes=12)
    with pytest.raises(DistillError, match="labels span"):
        load_dataset("mnist", str(tmp_path))
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(DistillError, match="is not a readable .npz file"):
        load_dataset("mnist", str(tmp_path))


@pytest.mark.parametrize("name", ["mnist", "kmnist"])
def test_tfds_path_with_mock_data(name):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=30):
        raw = load_dataset(name, None, download=False)
    assert raw.train_images.shape == (30, 28, 28, 1) and raw.origin == f"tfds:{name}"
    assert raw.train_labels.min() >= 0 and raw.train_labels.max() < 10


def test_tfds_emnist_letters_are_relabelled_and_transposed():
    import tensorflow_datasets as tfds
    image = np.zeros((28, 28, 1), np.uint8)
    image[2, 20] = 255  # row 2, column 20 before the transpose

    def as_dataset(self, split, **kwargs):
        del self, kwargs
        count = 8 if split == "train" else 4
        labels = np.arange(1, count + 1, dtype=np.int64)  # letters count from 1
        return tf.data.Dataset.from_tensor_slices(
            {"image": np.stack([image] * count), "label": labels})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        raw = load_dataset("emnist_letters", None, download=False)
        upright = load_dataset("emnist_letters", None, download=False, orientation="upright")
    assert raw.train_labels.tolist() == list(range(8))
    # By default as stored (what torchvision gave the paper's runs); upright on request.
    assert raw.train_images[0, 2, 20, 0] == 255 and raw.train_images[0, 20, 2, 0] == 0
    assert upright.train_images[0, 20, 2, 0] == 255 and upright.train_images[0, 2, 20, 0] == 0


@pytest.mark.parametrize("held,wanted,transposed", [
    ("as_stored", "as_stored", False), ("as_stored", "upright", True),
    ("upright", "upright", False), ("upright", "as_stored", True)])
def test_a_local_emnist_npz_states_its_orientation(tmp_path, held, wanted, transposed):
    path = write_fake_npz(str(tmp_path / "emnist_letters.npz"), num_classes=26, label_offset=1)
    stored = np.load(path)["x_train"]
    raw = load_dataset("emnist_letters", str(tmp_path), orientation=wanted, npz_orientation=held)
    expected = np.transpose(stored, (0, 2, 1)) if transposed else stored
    np.testing.assert_array_equal(raw.train_images[..., 0], expected)
    # Datasets stored upright ignore both settings.
    write_fake_npz(str(tmp_path / "mnist.npz"))
    np.testing.assert_array_equal(
        load_dataset("mnist", str(tmp_path), orientation=wanted,
                     npz_orientation=held).train_images[..., 0],
        np.load(str(tmp_path / "mnist.npz"))["x_train"])


def test_tfds_labels_out_of_range_are_rejected():
    import tensorflow_datasets as tfds

    # The generic mock draws EMNIST labels from TFDS's 37 declared classes, which
    # the real letters data never uses (0, 27..36): the loader must refuse them.
    with tfds.testing.mock_data(num_examples=60):
        with pytest.raises(DistillError, match="labels span"):
            load_dataset("emnist_letters", None, download=False)


def test_adapt_images_between_datasets():
    grey = np.random.default_rng(0).integers(0, 255, (3, 28, 28, 1)).astype(np.uint8)
    colour = adapt_images(grey, (32, 32, 3))
    assert colour.shape == (3, 32, 32, 3) and colour.dtype == np.uint8
    np.testing.assert_array_equal(colour[..., 0], colour[..., 2])
    assert adapt_images(colour, (28, 28, 1)).shape == (3, 28, 28, 1)


def test_epoch_batches_are_static_seeded_and_cover_an_epoch():
    # The loop gathers outer batches on the device by these rows of indices.
    batches = epoch_index_batches(100, 32, seed=3, epoch=0)
    assert batches.shape == (steps_per_epoch(100, 32), 32) == (4, 32)
    # Every example is seen; the last batch wraps around to the epoch's first 28.
    assert set(batches.ravel().tolist()) == set(range(100))
    np.testing.assert_array_equal(batches[-1, 4:], batches.ravel()[:28])
    assert len(set(batches[-1].tolist())) == 32  # no example twice within one batch
    # A size that divides evenly repeats nothing.
    even = epoch_index_batches(96, 32, seed=3, epoch=0)
    assert even.shape == (3, 32) and len(set(even.ravel().tolist())) == 96
    np.testing.assert_array_equal(epoch_index_batches(100, 32, 3, 0), batches)
    assert not np.array_equal(epoch_index_batches(100, 32, 3, 1), batches)
    # A target set smaller than a batch is one whole batch.
    assert epoch_index_batches(10, 32, 0, 0).shape == (1, 10)


def test_epochs_in_a_row_equal_the_epochs_one_by_one():
    # A stretch of the loop spans several epochs (and a resumed run starts at its
    # epoch): its rows must be exactly the per-epoch batches, in order.
    by_epoch = [epoch_index_batches(100, 32, 5, epoch) for epoch in (1, 2, 3)]
    assert sum(len(rows) for rows in by_epoch) == 3 * steps_per_epoch(100, 32)
    np.testing.assert_array_equal(np.concatenate(by_epoch)[:steps_per_epoch(100, 32)],
                                  epoch_index_batches(100, 32, 5, 1))
    assert all(set(rows.ravel().tolist()) == set(range(100)) for rows in by_epoch)


def _write_k49_official_files(folder, num_train=120, num_test=49):
    rng = np.random.default_rng(0)
    arrays = {"k49-train-imgs.npz": rng.integers(0, 255, (num_train, 28, 28), dtype=np.uint8),
              "k49-train-labels.npz": np.arange(num_train) % 49,
              "k49-test-imgs.npz": rng.integers(0, 255, (num_test, 28, 28), dtype=np.uint8),
              "k49-test-labels.npz": np.arange(num_test) % 49}
    for file, array in arrays.items():
        np.savez(os.path.join(folder, file), array)  # stored as arr_0, as the official files
    return arrays


def test_kuzushiji49_reads_its_official_files(tmp_path):
    arrays = _write_k49_official_files(str(tmp_path))
    raw = load_dataset("kuzushiji49", str(tmp_path))
    assert raw.train_images.shape == (120, 28, 28, 1) and raw.test_images.shape == (49, 28, 28, 1)
    np.testing.assert_array_equal(raw.train_images[..., 0], arrays["k49-train-imgs.npz"])
    assert sorted(set(raw.test_labels.tolist())) == list(range(49))
    assert raw.origin.startswith("k49-train-imgs.npz") and "/" not in raw.origin


def test_kuzushiji49_missing_or_wrong_files_are_refused(tmp_path):
    with pytest.raises(DistillError, match="not in tensorflow-datasets.*k49-train-imgs.npz"):
        load_dataset("kuzushiji49", str(tmp_path))
    _write_k49_official_files(str(tmp_path))
    np.savez(str(tmp_path / "k49-test-labels.npz"), labels=np.zeros(49))
    with pytest.raises(DistillError, match="expected one array arr_0"):
        load_dataset("kuzushiji49", str(tmp_path))
    np.savez(str(tmp_path / "k49-test-labels.npz"), np.full(49, 49))
    with pytest.raises(DistillError, match="labels span"):
        load_dataset("kuzushiji49", str(tmp_path))


def test_cub_from_a_local_npz_is_resized_to_32x32(tmp_path):
    images = np.zeros((10, 64, 48, 3), np.uint8)
    images[:, :32] = 200  # top half bright: stays the top half after resizing
    np.savez(str(tmp_path / "cub200.npz"), x_train=images, y_train=np.arange(10),
             x_test=images[:4], y_test=np.arange(4))
    raw = load_dataset("cub200", str(tmp_path))
    assert raw.train_images.shape == (10, 32, 32, 3) and raw.train_images.dtype == np.uint8
    assert (raw.train_images[:, :15] == 200).all() and (raw.train_images[:, 17:] == 0).all()


def test_cub_through_tfds_mock_data_comes_in_one_size():
    import tensorflow_datasets as tfds
    sizes = iter([(40, 60), (33, 33), (80, 50)] * 10)

    def as_dataset(self, split, **kwargs):
        del self, kwargs
        count = 6 if split == "train" else 3
        images = [np.full((*next(sizes), 3), 100, np.uint8) for _ in range(count)]
        return tf.data.Dataset.from_generator(
            lambda: iter(({"image": image, "label": label} for label, image in
                          enumerate(images))),
            output_signature={"image": tf.TensorSpec((None, None, 3), tf.uint8),
                              "label": tf.TensorSpec((), tf.int64)})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        raw = load_dataset("cub200", None, download=False)
    assert raw.train_images.shape == (6, 32, 32, 3) and raw.test_images.shape == (3, 32, 32, 3)
    assert (raw.train_images == 100).all() and raw.origin == "tfds:caltech_birds2011"


def test_cross_dataset_base_images_get_the_targets_size_and_normalisation(tmp_path):
    from kerasdistill.data.registry import COLOUR_MEAN, COLOUR_STD
    from kerasdistill.experiment import load_inputs, resolve
    from tests.conftest import tiny_config
    rng = np.random.default_rng(1)
    source = rng.integers(0, 255, (50, 64, 64, 3), dtype=np.uint8)
    np.savez(str(tmp_path / "cub200.npz"), x_train=source, y_train=np.arange(50) % 200,
             x_test=source[:5], y_test=np.arange(5))
    write_fake_npz(str(tmp_path / "cifar10.npz"), shape=(32, 32, 3))
    config = resolve(tiny_config(str(tmp_path), target="cifar10", source="cub200"))
    inputs = load_inputs(config)
    # The source is resized once, at load (antialiased bilinear), and not again.
    expected = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
        tf.cast(source, tf.float32), (32, 32), antialias=True)), 0, 255), tf.uint8).numpy()
    np.testing.assert_array_equal(inputs.base_images_uint8, expected[inputs.base_indices])
    np.testing.assert_allclose(
        inputs.base_images,
        (inputs.base_images_uint8 / 255.0 - np.array(COLOUR_MEAN)) / np.array(COLOUR_STD),
        rtol=1e-5, atol=1e-5)
    assert config.base_selection == "unbalanced"
