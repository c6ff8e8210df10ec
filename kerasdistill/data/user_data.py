"""A user's own dataset: `--target` / `--source` given as a path instead of a name.

The path is a Keras-layout `.npz` file (`x_train, y_train, x_test, y_test`, or the two
arrays of one split) or a folder of such files, whose arrays are joined per key in
file-name order (say `train.npz` with x_train, y_train and `test.npz` with x_test,
y_test). Everything else comes from the arrays, and is checked before a run writes
anything:

- images: uint8, [N, H, W] (greyscale) or [N, H, W, C] with C = 1 or 3, the same H, W, C
  in every split;
- labels: integers 0..K-1, one per image; K (the class count) is the largest label + 1,
  and every class must appear in the training split (a class it lacks could never be
  learned, and its test images would count as errors);
- class names: optional, one per line in a sidecar text file, `<file stem>.classes.txt`
  beside the file or `classes.txt` in the folder; K lines;
- normalisation: per-channel mean and std of pixels / 255 over the training split,
  recorded with every result (the registered datasets use the paper's constants);
- validation: 10 % of the training split, held out by the run's seed as usual.

A path is anything that ends in `.npz` or contains a path separator (`./mine` for a
folder in the working directory): the registered names never do.
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np

from kerasdistill.data.npz_files import NPZ_KEYS, SPLITS, read_npz
from kerasdistill.data.spec import DatasetSpec
from kerasdistill.errors import DataNotFoundError, DistillError

USER_VALIDATION_FRACTION = 0.1
CLASSES_SUFFIX = ".classes.txt"
FOLDER_CLASSES_FILE = "classes.txt"


def is_dataset_path(name: str) -> bool:
    """True when `name` names a user's file or folder rather than a registered dataset."""
    return name.endswith(".npz") or "/" in name or os.sep in name


def user_dataset_spec(path: str) -> DatasetSpec:
    """The spec of the user's dataset at `path` (read, checked and cached)."""
    return _read(*_cache_key(path))[0]


def user_dataset_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays of the user's dataset at `path`, checked: images NHWC uint8, labels
    int64 from 0."""
    return _read(*_cache_key(path))[1]


def user_data_record(spec: DatasetSpec) -> dict:
    """What a run records of a user's dataset: no folder of the machine, the arrays'
    fingerprint, and what the protocol took from them."""
    return {"file": os.path.basename(os.path.normpath(spec.local_path)),
            "fingerprint": spec.fingerprint, "num_classes": spec.num_classes,
            "image_shape": list(spec.image_shape), "mean": list(spec.mean),
            "std": list(spec.std), "class_names": list(spec.class_names)}


def check_same_arrays(name: str, recorded: str, what: str):
    """Refuses a user's dataset whose arrays differ from the `recorded` fingerprint
    (export and train must read the arrays the run was made with)."""
    found = user_dataset_spec(name).fingerprint
    if found != recorded:
        raise DistillError(f"{name} holds other arrays (sha256 {found}) than {what} "
                           f"({recorded}); give it its data back")


def identity_name(name: str) -> str:
    """How a run's identity names a dataset: a registered name as it is; a user's data by
    file name and fingerprint, so that the same arrays under another spelling of the path
    are the same run and other arrays under the same path are not."""
    if not is_dataset_path(name):
        return name
    spec = user_dataset_spec(name)
    return f"{os.path.basename(os.path.normpath(name))} (sha256 {spec.fingerprint})"


def _cache_key(path: str) -> tuple:
    """(the path as given, its absolute path, a stamp of its files) so that an edited
    file is read again."""
    if not os.path.exists(path):
        raise DataNotFoundError(f"dataset path {path} does not exist: give a Keras-layout "
                                f".npz file (arrays {', '.join(NPZ_KEYS)}) or a folder of them")
    files = _npz_files(path) + [f for f in (_sidecar(path),) if os.path.exists(f)]
    stamp = tuple((f, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files)
    return path, os.path.abspath(path), stamp


def _npz_files(path: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".npz"))
        if not files:
            raise DistillError(f"the folder {path} holds no .npz file; a dataset folder holds "
                               f"Keras-layout .npz files (e.g. train.npz with x_train, y_train "
                               f"and test.npz with x_test, y_test)")
        return files
    if not path.endswith(".npz"):
        raise DistillError(f"{path} is neither a .npz file nor a folder of them")
    return [path]


@functools.lru_cache(maxsize=4)
def _read(path: str, absolute: str, stamp: tuple) -> tuple[DatasetSpec, dict]:
    del absolute  # part of the cache key only
    files = [f for f, _, _ in stamp if f.endswith(".npz")]
    parts: dict[str, list] = {key: [] for key in NPZ_KEYS}
    for file in files:
        for key, array in read_npz(file).items():
            parts[key].append((os.path.basename(file), array))
    arrays, shape = {}, None
    for split in SPLITS:
        if not parts[f"x_{split}"]:
            continue
        images = [_images(f"{name}: x_{split}", a) for name, a in parts[f"x_{split}"]]
        labels = [_labels(f"{name}: y_{split}", a) for name, a in parts[f"y_{split}"]]
        for (name, _), image_block, label_block in zip(parts[f"x_{split}"], images, labels):
            if len(image_block) != len(label_block):
                raise DistillError(f"{name}: {len(image_block)} {split} images but "
                                   f"{len(label_block)} labels")
            if shape is None:
                shape = image_block.shape[1:]
            elif image_block.shape[1:] != shape:
                raise DistillError(f"{name}: {split} images have shape {image_block.shape[1:]}, "
                                   f"other images of the dataset {shape}: one shape for all")
        arrays[f"x_{split}"] = np.concatenate(images)
        arrays[f"y_{split}"] = np.concatenate(labels)
    if "x_train" not in arrays:
        raise DistillError(f"{path} has no training split (x_train, y_train): the class count "
                           f"and the normalisation come from it")
    if not len(arrays["y_train"]):
        raise DistillError(f"{path}: the training split is empty")
    num_classes = int(max(labels.max() for key, labels in arrays.items()
                          if key.startswith("y_") and len(labels))) + 1
    missing = sorted(set(range(num_classes)) - set(np.unique(arrays["y_train"]).tolist()))
    if missing:
        shown = ", ".join(str(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DistillError(f"{path}: classes {shown} ({len(missing)} of {num_classes}) are missing "
                           f"from the training split: labels must be 0..K-1 with every class "
                           f"among the training images")
    train = arrays["x_train"].astype(np.float64) / 255.0
    axes = (0, 1, 2)
    mean = tuple(float(v) for v in train.mean(axis=axes))
    std = tuple(float(v) for v in train.std(axis=axes))
    if min(std) == 0.0:
        raise DistillError(f"{path}: every training pixel of a channel has one value (std 0): "
                           f"the images cannot be normalised")
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    spec = DatasetSpec(
        name=path, tfds_name=None, image_shape=tuple(int(d) for d in shape),
        num_classes=num_classes,
        num_validation=max(1, int(round(USER_VALIDATION_FRACTION * len(arrays["y_train"])))),
        url="your own data", class_names=_class_names(path, num_classes),
        normalization=(mean, std), local_path=path, fingerprint=digest.hexdigest()[:16])
    return spec, arrays


def _images(where: str, images: np.ndarray) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DistillError(f"{where} is {images.dtype}; images must be uint8 (0..255), as the "
                           f"Keras datasets hold them")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DistillError(f"{where} has shape {images.shape}; expected [N, H, W] (greyscale) "
                           f"or [N, H, W, C] with C = 1 or 3")
    return images


def _labels(where: str, labels: np.ndarray) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise DistillError(f"{where} is {labels.dtype}; labels must be integers 0..K-1")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DistillError(f"{where} has shape {labels.shape}; expected one label per image")
    if len(labels) and labels.min() < 0:
        raise DistillError(f"{where} holds the label {labels.min()}; labels must be 0..K-1")
    return labels.astype(np.int64)


def _sidecar(path: str) -> str:
    """The file of class names that may go with the dataset at `path`."""
    return (os.path.join(path, FOLDER_CLASSES_FILE) if os.path.isdir(path)
            else path[:-len(".npz")] + CLASSES_SUFFIX)


def _class_names(path: str, num_classes: int) -> tuple[str, ...]:
    sidecar = _sidecar(path)
    if not os.path.exists(sidecar):
        return ()
    with open(sidecar, encoding="utf-8") as f:
        names = tuple(line.strip() for line in f if line.strip())
    if len(names) != num_classes:
        raise DistillError(f"{sidecar} names {len(names)} classes; the labels have "
                           f"{num_classes} (one name per line, in label order)")
    return names
