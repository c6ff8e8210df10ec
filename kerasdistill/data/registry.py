"""The datasets kerasdistill knows, with the facts the protocol needs about each."""

from __future__ import annotations

import dataclasses

from kerasdistill.errors import DistillError

# SPEC section 3: one normalisation for every greyscale target, one for every colour target.
GREYSCALE_MEAN = (0.1307,)
GREYSCALE_STD = (0.3081,)
COLOUR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
COLOUR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the protocol needs to know about one dataset.

    Attributes:
      name: our name, also the stem of the local file `<name>.npz`.
      tfds_name: the tensorflow-datasets builder name.
      image_shape: (height, width, channels) after loading.
      num_classes: number of classes the labels use.
      num_validation: examples held out of the official train split for validation.
      label_offset: subtracted from the stored labels (EMNIST letters count from 1).
      stored_transposed: the dataset's files (and TFDS, and torchvision, which the
        authors' code loads) hold the images transposed relative to upright (EMNIST).
        Runs see them as stored by default, as the paper's runs did
        (`orientation="upright"` transposes them back).
      url: where users obtain the data by hand, for error messages.
      class_names: a name per class, in label order (empty: the class numbers).
      official_files: the dataset's own file layout in --data_dir, read when
        `<name>.npz` is absent: {"x_train": file, "y_train": ..., "x_test": ...,
        "y_test": ...}, each an npz holding one array `arr_0` (Kuzushiji-49's layout).
      resize_on_load: images come in varying sizes (CUB) and are resized to
        `image_shape` as they load (bilinear, antialiased).
    """

    name: str
    tfds_name: str | None               # None: not in tensorflow-datasets
    image_shape: tuple[int, int, int]
    num_classes: int
    num_validation: int
    label_offset: int = 0
    stored_transposed: bool = False
    url: str = ""
    class_names: tuple[str, ...] = ()
    official_files: tuple[tuple[str, str], ...] = ()
    resize_on_load: bool = False

    def class_name_list(self) -> list[str]:
        """Names for every class: the registered ones, or the class numbers."""
        return list(self.class_names) or [str(c) for c in range(self.num_classes)]

    @property
    def mean(self) -> tuple[float, ...]:
        return GREYSCALE_MEAN if self.image_shape[-1] == 1 else COLOUR_MEAN

    @property
    def std(self) -> tuple[float, ...]:
        return GREYSCALE_STD if self.image_shape[-1] == 1 else COLOUR_STD


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _DATASETS[spec.name] = spec
    return spec


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return _DATASETS[name]
    except KeyError:
        raise DistillError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_DATASETS))}"
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
    # kuzushiji49.npz) in --data_dir. SPEC 3: 209,128 train / 23,237 validation.
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
