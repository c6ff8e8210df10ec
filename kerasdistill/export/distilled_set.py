"""A distilled set on disk (docs/method.md section 7): TFDS records, a JSON recipe and an npz.

    <dir>/
      dataset_info.json, features.json, metadata.json   TFDS's own metadata
      distilled_set-train.tfrecord-00000-of-00001       one example per base image
      distilled_set.json                                 the recipe and provenance
      distilled_set.npz                                  images, soft_labels, source_indices
      zca_whitening.npz                                  mean and W, when the recipe whitens

`tfds.builder_from_directory(<dir>)` loads it with no kerasdistill import; the
records are serialised by TFDS's FeaturesDict and described by
`tfds.folder_dataset.write_metadata`, and TFDS's `metadata.json` holds the same
recipe as distilled_set.json. `load_distilled` reads it back into a
`DistilledSet`, whose `as_dataset` feeds `model.fit`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re

import numpy as np

from kerasdistill.config import WHITENINGS
from kerasdistill.data.whitening import ZCAStatistics
from kerasdistill.errors import DistillError
from kerasdistill.files import atomic_directory, read_json, write_json_atomic
from kerasdistill.sets import METADATA_FILE, distilled_set_folder

FORMAT = "kerasdistill.distilled_set"
FORMAT_VERSION = 1
DATASET_NAME = "distilled_set"
TFDS_VERSION = "1.0.0"
NPZ_FILE = "distilled_set.npz"
WHITENING_FILE = "zca_whitening.npz"
_FILE_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
_REQUIRED_METADATA = ("target", "num_classes", "image_shape", "mean", "std", "num_train_steps",
                      "inner_batch_size", "recipe")


@dataclasses.dataclass(frozen=True, eq=False)
class DistilledSet:
    """Base images with learned soft labels and the recipe to train on them.

    Attributes:
      images: uint8 [n, H, W, C], as the model sees them before normalisation.
      soft_labels: float32 [n, num_classes], rows summing to 1.
      source_indices: int64 [n], positions in the source dataset's official train split.
      source_labels: int64 [n], each image's class in its own dataset.
      metadata: the recipe and provenance (distilled_set.json).
      whitening: the ZCA whitening every image was passed through after normalisation
        (data/whitening.py), when the recipe says `"whitening": "zca"`; else None.

    Example:

    >>> distilled = kerasdistill.load_distilled("runs/mnist_n100_ld/distilled_set")
    >>> model.compile("adam", keras.losses.CategoricalCrossentropy(from_logits=True))
    >>> model.fit(distilled.as_dataset(distilled.inner_batch_size, repeat=True),
    ...           steps_per_epoch=distilled.num_train_steps)
    """

    images: np.ndarray
    soft_labels: np.ndarray
    source_indices: np.ndarray
    source_labels: np.ndarray
    metadata: dict
    whitening: ZCAStatistics | None = None

    def __post_init__(self):
        missing = [key for key in _REQUIRED_METADATA if key not in self.metadata]
        if missing:
            raise DistillError(f"distilled set metadata lacks {missing}")
        images, labels = np.asarray(self.images), np.asarray(self.soft_labels)
        n = len(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DistillError(f"distilled images must be uint8 [n, H, W, C], got "
                               f"{images.dtype} {images.shape}")
        if tuple(images.shape[1:]) != tuple(self.metadata["image_shape"]):
            raise DistillError(f"distilled images have shape {images.shape[1:]}, the metadata "
                               f"says {self.metadata['image_shape']}")
        if labels.shape != (n, self.metadata["num_classes"]):
            raise DistillError(f"soft labels have shape {labels.shape}, expected "
                               f"({n}, {self.metadata['num_classes']})")
        if not np.all(np.isfinite(labels)) or labels.min() < 0 or \
                not np.allclose(labels.sum(axis=1), 1.0, atol=1e-4):
            raise DistillError("soft labels must be finite, non-negative rows summing to 1")
        for name in ("source_indices", "source_labels"):
            if np.asarray(getattr(self, name)).shape != (n,):
                raise DistillError(f"{name} must hold one entry per image ({n})")
        self._check_whitening()

    def _check_whitening(self):
        recipe = self.metadata["recipe"]
        whitens = recipe.get("whitening", "none")
        if whitens not in WHITENINGS:
            raise DistillError(f"the recipe's whitening must be one of {WHITENINGS}, got "
                               f"{whitens!r}")
        if (whitens == "zca") != (self.whitening is not None):
            raise DistillError(
                "the recipe whitens its images (zca) but the set holds no whitening statistics"
                if whitens == "zca" else
                "the set holds whitening statistics but its recipe does not whiten")
        if self.whitening is not None:
            size = int(np.prod(self.metadata["image_shape"]))
            if self.whitening.size != size:
                raise DistillError(f"the whitening statistics are for {self.whitening.size} "
                                   f"values, the images have {size}")
            if self.whitening.regularization != recipe.get("zca_regularization"):
                raise DistillError(f"the whitening statistics have regularization "
                                   f"{self.whitening.regularization}, the recipe says "
                                   f"{recipe.get('zca_regularization')}")

    @property
    def num_train_steps(self) -> int:
        return int(self.metadata["num_train_steps"])

    @property
    def inner_batch_size(self) -> int:
        return int(self.metadata["inner_batch_size"])

    @property
    def num_classes(self) -> int:
        return int(self.metadata["num_classes"])

    def __len__(self) -> int:
        return len(self.images)

    def preprocess(self, images) -> np.ndarray:
        """uint8 images of the target's shape (the set's own, or the target's test
        images) as the run's models were fed them: float32 with the target's per-channel
        mean and std, then whitened when the recipe whitens."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != tuple(
                self.metadata["image_shape"]):
            raise DistillError(f"preprocess takes uint8 images of shape [N, "
                               f"{', '.join(map(str, self.metadata['image_shape']))}], got "
                               f"{images.dtype} {images.shape}")
        from kerasdistill.data.splits import normalize_pixels
        normalized = normalize_pixels(images, self.metadata["mean"], self.metadata["std"])
        return normalized if self.whitening is None else self.whitening(normalized)

    def normalized_images(self) -> np.ndarray:
        """The set's images as the models of the run were fed them (`preprocess`)."""
        return self.preprocess(self.images)

    def whitening_layer(self):
        """The set's whitening as a fitted `ZCAWhitening` Keras layer (to put in front
        of a model that takes normalised images), or None when the recipe has none."""
        if self.whitening is None:
            return None
        from kerasdistill.layers.zca import ZCAWhitening
        layer = ZCAWhitening(self.whitening.regularization)
        layer.set_statistics(self.whitening, self.metadata["image_shape"])
        return layer

    def as_dataset(self, batch_size: int, shuffle: bool = True, seed: int | None = None,
                   normalize: bool = True, repeat: bool = False,
                   drop_remainder: bool | None = None):
        """A `tf.data.Dataset` of (image, soft label) batches, ready for `model.fit`.

        Args:
          batch_size: examples per batch (the recipe's is `inner_batch_size`).
          shuffle: reshuffle the examples on every pass.
          seed: seed of the shuffle (None: a different order each run).
          normalize: float32 images normalised as the run's models saw them;
            False gives the uint8 images.
          repeat: pass over the set forever (then give `model.fit` a
            `steps_per_epoch`, e.g. `num_train_steps`).
          drop_remainder: drop a last short batch; default: when repeating, so
            every step sees `batch_size` examples as in the protocol.
        """
        from kerasdistill.data.pipeline import soft_label_dataset
        if not 0 < batch_size <= len(self):
            raise DistillError(f"batch_size must be in 1..{len(self)} (the set's size), "
                               f"got {batch_size}")
        images = self.normalized_images() if normalize else np.asarray(self.images)
        return soft_label_dataset(images, self.soft_labels, batch_size, seed=seed,
                                  shuffle=shuffle, repeat=repeat,
                                  drop_remainder=repeat if drop_remainder is None
                                  else drop_remainder)


def _features(image_shape, num_classes):
    import tensorflow_datasets as tfds
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=tuple(image_shape), dtype=np.uint8),
        "soft_label": tfds.features.Tensor(shape=(num_classes,), dtype=np.float32),
        "source_index": tfds.features.Scalar(dtype=np.int64),
        "source_label": tfds.features.Scalar(dtype=np.int64),
    })


def _jsonable(value):
    """Plain JSON types (numpy scalars and tuples come out of configs)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_replaceable(path: str, flag: str = "--output_dir", formats=(FORMAT,)):
    """Raises DistillError unless `path` is absent or already a distilled set (of one of
    `formats`): writing a set replaces the folder whole, and must never replace anything
    else (a run, runs/)."""
    from kerasdistill.files import check_creatable
    if os.path.exists(path):
        metadata_path = os.path.join(path, METADATA_FILE)
        is_set = os.path.isdir(path) and os.path.exists(metadata_path)
        if is_set:
            try:
                is_set = read_json(metadata_path, "distilled set metadata").get(
                    "format") in formats
            except DistillError:
                is_set = False
        if not is_set:
            where = f"{flag}={path}" if flag.startswith("--") else f"{flag} {path}"
            raise DistillError(f"{where} exists and is not a distilled set; writing one "
                               f"replaces the folder whole, so move it away or name a new folder")
    check_creatable(os.path.dirname(os.path.abspath(path)), flag)


def write_distilled_set(distilled: DistilledSet, path: str) -> str:
    """Writes `distilled` to folder `path` (replacing it whole, atomically). `path` must
    be absent or hold a distilled set already."""
    import tensorflow as tf
    import tensorflow_datasets as tfds
    check_replaceable(path)
    metadata = _jsonable({"format": FORMAT, "format_version": FORMAT_VERSION,
                          **distilled.metadata, "num_examples": len(distilled)})
    features = _features(metadata["image_shape"], metadata["num_classes"])
    with atomic_directory(path) as tmp:
        template = tfds.core.ShardedFileTemplate(
            data_dir=tmp, template=_FILE_TEMPLATE, dataset_name=DATASET_NAME, split="train",
            filetype_suffix="tfrecord")
        shard = template.sharded_filepath(shard_index=0, num_shards=1)
        with tf.io.TFRecordWriter(os.fspath(shard)) as writer:
            for i in range(len(distilled)):
                record = features.serialize_example({
                    "image": np.asarray(distilled.images[i], np.uint8),
                    "soft_label": np.asarray(distilled.soft_labels[i], np.float32),
                    "source_index": int(distilled.source_indices[i]),
                    "source_label": int(distilled.source_labels[i])})
                # An Example's features are a protobuf map, serialised in hash order: the
                # same set gave different bytes per process. In key order, a set written
                # twice is the same file (the shipped sets are checked byte for byte).
                writer.write(tf.train.Example.FromString(record).SerializeToString(
                    deterministic=True))
        split = tfds.core.SplitInfo(name="train", shard_lengths=[len(distilled)],
                                    num_bytes=os.path.getsize(shard),
                                    filename_template=template)
        tfds.folder_dataset.write_metadata(
            data_dir=tmp, features=features, split_infos=[split], filename_template=template,
            version=TFDS_VERSION, check_data=True, disable_shuffling=True,
            metadata=tfds.core.MetadataDict(metadata),
            description=(f"Distilled set for {metadata['target']}: {len(distilled)} base "
                         f"images with learned soft labels (kerasdistill)."))
        write_json_atomic(os.path.join(tmp, METADATA_FILE), metadata)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=np.asarray(distilled.images, np.uint8),
                            soft_labels=np.asarray(distilled.soft_labels, np.float32),
                            source_indices=np.asarray(distilled.source_indices, np.int64),
                            source_labels=np.asarray(distilled.source_labels, np.int64))
        with open(os.path.join(tmp, NPZ_FILE), "wb") as f:
            f.write(buffer.getvalue())
        if distilled.whitening is not None:
            with open(os.path.join(tmp, WHITENING_FILE), "wb") as f:
                np.savez(f, mean=distilled.whitening.mean, matrix=distilled.whitening.matrix,
                         regularization=distilled.whitening.regularization)
    return path


def load_distilled(path: str) -> DistilledSet:
    """Reads a distilled set written by kerasdistill: a folder (a run's `distilled_set/`),
    or the name of a ready set shipped with the package (`kerasdistill/sets`, e.g.
    "mnist/n100/ld"; `python -m experiments.sets` lists them). A folder that exists
    wins over a ready set of the same name.

    The images and labels come from the TFDS records (through
    `tfds.builder_from_directory`), the recipe from distilled_set.json.

    Raises:
      DistillError: no such folder or ready set, not a distilled set, or damaged.
    """
    import tensorflow_datasets as tfds
    path = distilled_set_folder(path)
    metadata_path = os.path.join(path, METADATA_FILE)
    if not os.path.isdir(path):
        raise DistillError(f"{path} is not a folder (expected a distilled set, e.g. a run's "
                           f"<model_dir>/distilled_set)")
    if not os.path.exists(metadata_path):
        raise DistillError(f"{path} is not a distilled set: it has no {METADATA_FILE}")
    metadata = read_json(metadata_path, "distilled set metadata")
    if metadata.get("format") != FORMAT:
        raise DistillError(f"{metadata_path} is not a kerasdistill distilled set")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise DistillError(f"{path} has format version {metadata['format_version']}; this "
                           f"kerasdistill reads up to {FORMAT_VERSION}: upgrade it")
    try:
        builder = tfds.builder_from_directory(path)
        columns = {key: [] for key in ("image", "soft_label", "source_index", "source_label")}
        for batch in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False,
                                                      batch_size=4096)):
            for key in columns:
                columns[key].append(batch[key])
    except Exception as error:  # TFDS and tf.data raise many types for damaged files
        message = str(error).splitlines()[0] if str(error) else ""
        # tf.data's errors start with the op's internal name; the reason follows it.
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
        raise DistillError(f"cannot read the TFDS records of {path}: "
                           f"{type(error).__name__}: {message[:300]}") from None
    if not columns["image"]:
        raise DistillError(f"{path}: the distilled set has no examples")
    arrays = {key: np.concatenate(values) for key, values in columns.items()}
    if len(arrays["image"]) != metadata.get("num_examples", len(arrays["image"])):
        raise DistillError(f"{path}: {len(arrays['image'])} records, the metadata says "
                           f"{metadata['num_examples']}")
    return DistilledSet(images=arrays["image"], soft_labels=arrays["soft_label"],
                        source_indices=arrays["source_index"],
                        source_labels=arrays["source_label"], metadata=metadata,
                        whitening=_read_whitening(path, metadata))


def _read_whitening(path: str, metadata: dict) -> ZCAStatistics | None:
    """The set's ZCA statistics when its recipe whitens (None otherwise)."""
    if metadata.get("recipe", {}).get("whitening", "none") != "zca":
        return None
    whitening_path = os.path.join(path, WHITENING_FILE)
    if not os.path.exists(whitening_path):
        raise DistillError(f"{path}: the recipe whitens its images (zca) but the folder has "
                           f"no {WHITENING_FILE}; the set is incomplete")
    try:
        with np.load(whitening_path) as arrays:
            return ZCAStatistics(arrays["mean"], arrays["matrix"],
                                 float(arrays["regularization"]))
    except DistillError:
        raise
    except Exception as error:  # numpy raises many types for damaged files
        raise DistillError(f"cannot read {whitening_path}: {type(error).__name__}: "
                           f"{str(error)[:200]}") from None
