"""Loading datasets: a local `<name>.npz` first, tensorflow-datasets otherwise.

Both paths return the official train and test splits as uint8 NHWC images and
int64 labels counted from 0, checked against the registry's facts so that a wrong
file fails loudly here rather than training on garbage.

A local file may hold only one of the two splits (EMNIST letters' training split,
KMNIST's official test files): the split it lacks is None, and whoever needs it
(`RawDataset.require`) refuses with one error naming the split and the file.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from kerasdistill.config import ORIENTATIONS
from kerasdistill.data.npz_files import SPLITS, read_npz, read_single_array
from kerasdistill.data.registry import DatasetSpec, get_dataset_spec
from kerasdistill.data.user_data import user_dataset_arrays
from kerasdistill.errors import DataNotFoundError, DistillError, require_one_of


@dataclasses.dataclass(frozen=True)
class RawDataset:
    """Official splits of one dataset, as stored (uint8 images, labels from 0).

    A split the data lack is None (its images and labels both). `resplit` is the
    record of a re-split (data/resplit.py) when these "splits" were cut from one
    official split, else None.
    """

    spec: DatasetSpec
    train_images: np.ndarray | None
    train_labels: np.ndarray | None
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    origin: str  # the file or TFDS builder it came from, for the results
    resplit: dict | None = None

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits present, of ("train", "test")."""
        return tuple(split for split in SPLITS if getattr(self, f"{split}_images") is not None)

    def require(self, split: str, role: str, remedy: str = "") -> "RawDataset":
        """Itself, or one DistillError saying that `role` (e.g. "the target") needs
        `split`, which these data lack."""
        if split not in self.splits:
            raise DataNotFoundError(
                f"{self.spec.name} ({self.origin}) has no {split} split, which {role} needs: "
                f"the data hold only the {' and '.join(self.splits)} split"
                f"{'s' if len(self.splits) > 1 else ''}"
                f"{'. ' + remedy if remedy else ''}")
        return self


def load_dataset(name: str, data_dir: str | None = None, download: bool = False,
                 orientation: str = "as_stored", npz_orientation: str = "as_stored") -> RawDataset:
    """Loads dataset `name` from `<data_dir>/<name>.npz` or through TFDS.

    Args:
      name: a registered dataset name (see `dataset_names()`), or the path of a user's
        own dataset (data/user_data.py; `data_dir` is then not used).
      data_dir: a folder that may hold `<name>.npz` (Keras layout) and/or
        prepared TFDS data. None: TFDS's default folder only.
      download: whether TFDS may download and prepare the data when it is not
        found locally.
      orientation: for datasets stored transposed (EMNIST): "as_stored", as the
        files, TFDS and torchvision (the paper's runs) hold them, or "upright".
      npz_orientation: how a local `<name>.npz` of such a dataset holds its images
        ("as_stored", like the official files, or "upright"); TFDS data are as stored.

    Raises:
      DistillError: unknown name, a malformed file, or data that is neither
        present locally nor allowed (or able) to be downloaded.
    """
    spec = get_dataset_spec(name)
    require_one_of("orientation", orientation, ORIENTATIONS)
    require_one_of("npz_orientation", npz_orientation, ORIENTATIONS)
    if spec.local_path:  # a user's own file or folder (data/user_data.py), read and checked
        arrays = user_dataset_arrays(spec.local_path)
        origin = f"{os.path.basename(os.path.normpath(spec.local_path))} (sha256 " \
                 f"{spec.fingerprint})"
        return _validated(spec, arrays, origin)
    npz_path = os.path.join(data_dir, f"{name}.npz") if data_dir else None
    held = "as_stored"
    official = _official_files_present(spec, data_dir)
    if npz_path and os.path.exists(npz_path):
        arrays = read_npz(npz_path)
        # The file's name, not its path: results must not carry this machine's folders.
        origin = os.path.basename(npz_path)
        held = npz_orientation
    elif official:
        arrays = {key: read_single_array(os.path.join(data_dir, file))
                  for key, file in official}
        origin = "+".join(file for _, file in official)
    elif spec.tfds_name is None:
        raise DataNotFoundError(_not_found_message(spec, npz_path, data_dir))
    else:
        arrays = _read_tfds(spec, data_dir, download, npz_path)
        origin = f"tfds:{spec.tfds_name}"
    transpose = spec.stored_transposed and held != orientation
    return _validated(spec, arrays, origin, transpose)


def _official_files_present(spec: DatasetSpec, data_dir: str | None) -> list[tuple[str, str]]:
    """The (array key, file) pairs of the dataset's official files in data_dir, by whole
    split: a split counts when both its files (images and labels) are there."""
    if not data_dir:
        return []
    files = dict(spec.official_files)
    present = []
    for split in SPLITS:
        pair = [(key, files[key]) for key in (f"x_{split}", f"y_{split}") if key in files]
        if len(pair) == 2 and all(os.path.exists(os.path.join(data_dir, f)) for _, f in pair):
            present.extend(pair)
    return present


def _not_found_message(spec: DatasetSpec, npz_path: str | None, data_dir: str | None) -> str:
    files = ", ".join(file for _, file in spec.official_files)
    where = f"in {data_dir}" if data_dir else "(no --data_dir was given)"
    return (f"dataset {spec.name!r} is not in tensorflow-datasets and was not found {where}: "
            f"put its official files ({files}; source: {spec.url}) or {spec.name}.npz "
            f"(Keras layout: x_train, y_train, x_test, y_test) in --data_dir")


def _read_tfds(spec: DatasetSpec, data_dir: str | None, download: bool,
               npz_path: str | None) -> dict[str, np.ndarray]:
    # Imported here: TFDS takes seconds to import and most runs use local files.
    import tensorflow_datasets as tfds

    looked_for = f"{npz_path} was not found, and " if npz_path else ""
    official = (f"its official files ({', '.join(file for _, file in spec.official_files)}; "
                f"both files of a split at least) or " if spec.official_files else "")
    how_to_fix = (
        f"Either put {official}{spec.name}.npz (arrays x_train, y_train, x_test, y_test, as in "
        f"keras.datasets' mnist.npz; source: {spec.url}) in --data_dir, or allow "
        f"tensorflow-datasets to download '{spec.tfds_name}' (--download) on a machine "
        f"with internet access.")
    try:
        splits = tfds.load(spec.tfds_name, split=["train", "test"], data_dir=data_dir,
                           download=download, as_supervised=True)
    except Exception as error:  # TFDS raises many types (AssertionError, OSError, ...).
        state = ("could not be downloaded or loaded" if download
                 else "could not be loaded (not prepared? --download is off)")
        # Offline, an unprepared dataset is data not on this machine; a failed download
        # (or prepare) is a fault of its own.
        raise (DistillError if download else DataNotFoundError)(
            f"dataset {spec.name!r}: {looked_for}TFDS dataset '{spec.tfds_name}' {state} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            f"{how_to_fix}") from None
    arrays = {}
    for split_name, split in zip(("train", "test"), splits):
        if spec.resize_on_load:  # images of varying sizes cannot be batched as they are
            split = split.map(lambda image, label: (_resized(image, spec.image_shape), label))
        # Batching and iterating: tfds.load(batch_size=-1) aborts under mock data.
        images, labels = [], []
        for image_batch, label_batch in tfds.as_numpy(split.batch(8192)):
            images.append(image_batch)
            labels.append(label_batch)
        arrays[f"x_{split_name}"] = np.concatenate(images)
        arrays[f"y_{split_name}"] = np.concatenate(labels)
    return arrays


def _resized(images, image_shape):
    """uint8 images (one, or a batch) resized to image_shape's height and width."""
    import tensorflow as tf
    resized = tf.image.resize(tf.cast(images, tf.float32), image_shape[:2], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _validated(spec: DatasetSpec, arrays: dict[str, np.ndarray], origin: str,
               transpose: bool = False) -> RawDataset:
    out = {split: (None, None) for split in SPLITS}
    for split in SPLITS:
        if f"x_{split}" not in arrays:
            continue
        images = np.asarray(arrays[f"x_{split}"])
        labels = np.asarray(arrays[f"y_{split}"]).astype(np.int64).reshape(-1)
        if images.ndim == 3:  # greyscale stored without a channel axis
            images = images[..., None]
        if spec.resize_on_load and images.ndim == 4 and images.shape[1:3] != spec.image_shape[:2]:
            if images.dtype != np.uint8:
                raise DistillError(f"{origin}: {split} images are {images.dtype}, expected uint8")
            images = np.concatenate([_resized(images[i:i + 1000], spec.image_shape).numpy()
                                     for i in range(0, len(images), 1000)]) if len(images) \
                else images
        if images.shape[1:] != spec.image_shape:
            raise DistillError(
                f"{origin}: {split} images have shape {images.shape[1:]}, expected "
                f"{spec.image_shape} for {spec.name}")
        if images.dtype != np.uint8:
            raise DistillError(f"{origin}: {split} images are {images.dtype}, expected uint8")
        if len(images) != len(labels):
            raise DistillError(
                f"{origin}: {len(images)} {split} images but {len(labels)} labels")
        labels = labels - spec.label_offset
        if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise DistillError(
                f"{origin}: {split} labels span {labels.min() + spec.label_offset}.."
                f"{labels.max() + spec.label_offset}, expected {spec.label_offset}.."
                f"{spec.num_classes - 1 + spec.label_offset}")
        if transpose:
            images = np.ascontiguousarray(np.transpose(images, (0, 2, 1, 3)))
        out[split] = (images, labels)
    return RawDataset(spec=spec, train_images=out["train"][0], train_labels=out["train"][1],
                      test_images=out["test"][0], test_labels=out["test"][1], origin=origin)
