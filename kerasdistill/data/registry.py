"""The datasets kerasdistill knows, with the facts the protocol needs about each."""

from __future__ import annotations

from kerasdistill.data.spec import (COLOUR_MEAN, COLOUR_STD, GREYSCALE_MEAN,  # noqa: F401
                                    GREYSCALE_STD, DatasetSpec)
from kerasdistill.data.user_data import is_dataset_path, user_dataset_spec
from kerasdistill.errors import DistillError

_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _DATASETS[spec.name] = spec
    return spec


def get_dataset_spec(name: str) -> DatasetSpec:
    """A registered dataset by name, or a user's dataset by path (a `.npz` file or a
    folder of them: data/user_data.py)."""
    if is_dataset_path(name):
        return user_dataset_spec(name)
    try:
        return _DATASETS[name]
    except KeyError:
        raise DistillError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_DATASETS))}, or "
            f"a path to your own: a Keras-layout .npz file or a folder of them"
        ) from None


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


register_dataset(DatasetSpec(
    name="mnist", tfds_name="mnist", image_shape=(28, 28, 1), num_classes=10,
    num_validation=10_000, url="http://yann.lecun.com/exdb/mnist/"))
register_dataset(DatasetSpec(
    name="fashion_mnist", tfds_name="fashion_mnist", image_shape=(28, 28, 1), num_classes=10,
    num_validation=10_000, url="https://github.com/zalandoresearch/fashion-mnist",
    class_names=("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                 "sneaker", "bag", "ankle boot")))
register_dataset(DatasetSpec(
    name="kmnist", tfds_name="kmnist", image_shape=(28, 28, 1), num_classes=10,
    num_validation=10_000, url="https://github.com/rois-codh/kmnist",
    # Its official npz files, read by split (a machine may hold only the test files).
    official_files=(("x_train", "kmnist-train-imgs.npz"), ("y_train", "kmnist-train-labels.npz"),
                    ("x_test", "kmnist-test-imgs.npz"), ("y_test", "kmnist-test-labels.npz")),
    # Romanised readings of the ten Kuzushiji-MNIST characters (its classmap file).
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")))
register_dataset(DatasetSpec(
    name="emnist_letters", tfds_name="emnist/letters", image_shape=(28, 28, 1),
    # Letters are labelled 1..26 in every distribution of EMNIST letters.
    num_classes=26, num_validation=10_000, label_offset=1, stored_transposed=True,
    url="https://www.nist.gov/itl/products-and-services/emnist-dataset",
    class_names=tuple("abcdefghijklmnopqrstuvwxyz")))
register_dataset(DatasetSpec(
    name="cifar10", tfds_name="cifar10", image_shape=(32, 32, 3), num_classes=10,
    num_validation=5_000, url="https://www.cs.toronto.edu/~kriz/cifar.html",
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")))
register_dataset(DatasetSpec(
    name="cifar100", tfds_name="cifar100", image_shape=(32, 32, 3), num_classes=100,
    num_validation=5_000, url="https://www.cs.toronto.edu/~kriz/cifar.html"))
register_dataset(DatasetSpec(
    # Not in tensorflow-datasets: its official npz files (or a Keras-layout
    # kuzushiji49.npz) in --data_dir. docs/method.md section 3: 209,128 train / 23,237 validation.
    name="kuzushiji49", tfds_name=None, image_shape=(28, 28, 1), num_classes=49,
    num_validation=23_237, url="https://github.com/rois-codh/kmnist",
    official_files=(("x_train", "k49-train-imgs.npz"), ("y_train", "k49-train-labels.npz"),
                    ("x_test", "k49-test-imgs.npz"), ("y_test", "k49-test-labels.npz"))))
register_dataset(DatasetSpec(
    # CUB-200-2011: photographs of 200 bird species in varying sizes, brought to
    # 32x32 as they load (the paper's source for CIFAR-10; the authors resize to
    # 32x32 too). 5,994 train / 5,794 test images; 10% of train held out.
    name="cub200", tfds_name="caltech_birds2011", image_shape=(32, 32, 3), num_classes=200,
    num_validation=600, url="https://www.vision.caltech.edu/datasets/cub_200_2011/",
    resize_on_load=True))
