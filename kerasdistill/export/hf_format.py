"""A distilled set as a Hugging Face `datasets` folder: Parquet shards and a dataset card.

    <dir>/
      data/train-00000-of-00001.parquet   one row per base image
      README.md                           the dataset card: YAML metadata, then prose
      distilled_set.json                  the set's recipe and provenance, as in the TFDS set

`datasets.load_dataset("parquet", data_files="<dir>/data/*.parquet")` (or
`load_dataset("<dir>")`, which reads the card's `configs`) and `pandas.read_parquet`
read it. Columns:

- `image`: a Hugging Face `Image` (a struct of PNG `bytes` and a null `path`), uint8 as
  in the set, before normalisation;
- `soft_label`: float32 [num_classes], summing to 1;
- `source_index`, `source_label`: int64, as in the TFDS set.

The features are written twice, as `datasets` reads them: in the Parquet schema's
"huggingface" metadata and in the card's `dataset_info`. The card's `kerasdistill` block
holds what a user needs to train on the set: the normalisation (and whitening), the
recipe and the run's test accuracy. Needs pyarrow (`pip install "kerasdistill[hf]"`).
"""

from __future__ import annotations

import json
import os

import numpy as np

from kerasdistill.errors import DistillError
from kerasdistill.export.distilled_set import DistilledSet, check_replaceable
from kerasdistill.files import atomic_directory, write_json_atomic
from kerasdistill.sets import METADATA_FILE

FORMAT = "kerasdistill.distilled_set.hf"
SHARD = os.path.join("data", "train-00000-of-00001.parquet")
CARD = "README.md"


def require_pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DistillError("the hf format needs pyarrow, which kerasdistill installs only on "
                           "request: pip install \"kerasdistill[hf]\" (or pip install "
                           "pyarrow)") from None
    return pyarrow


def _features(num_classes: int) -> dict:
    """The columns as Hugging Face `datasets` describes features."""
    return {"image": {"_type": "Image"},
            "soft_label": {"feature": {"dtype": "float32", "_type": "Value"},
                           "length": num_classes, "_type": "Sequence"},
            "source_index": {"dtype": "int64", "_type": "Value"},
            "source_label": {"dtype": "int64", "_type": "Value"}}


def _png(image: np.ndarray) -> bytes:
    import tensorflow as tf
    return tf.io.encode_png(image).numpy()


def _table(distilled: DistilledSet):
    pa = require_pyarrow()
    num_classes = distilled.num_classes
    schema = pa.schema(
        [("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
         ("soft_label", pa.list_(pa.float32(), num_classes)),
         ("source_index", pa.int64()), ("source_label", pa.int64())],
        metadata={"huggingface": json.dumps({"info": {"features": _features(num_classes)}})})
    images = [{"bytes": _png(np.asarray(image, np.uint8)), "path": None}
              for image in distilled.images]
    soft_labels = pa.FixedSizeListArray.from_arrays(
        pa.array(np.asarray(distilled.soft_labels, np.float32).reshape(-1)), num_classes)
    return pa.Table.from_arrays(
        [pa.array(images, schema.field("image").type), soft_labels,
         pa.array(np.asarray(distilled.source_indices, np.int64)),
         pa.array(np.asarray(distilled.source_labels, np.int64))], schema=schema)


def _scalar(value) -> str:
    """JSON text, except that a float in exponent form gets a decimal point (1.0e-08):
    YAML 1.1 readers (PyYAML) take 1e-08 for a string."""
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    text = json.dumps(value)
    if isinstance(value, float) and "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _yaml(value, indent: int = 0) -> list:
    """YAML lines for plain JSON values: mappings and lists of mappings in block style,
    scalars and lists of scalars as JSON (which is valid YAML). pyyaml is not a
    dependency, and these cards need no more."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and item or \
                    isinstance(item, list) and item and isinstance(item[0], dict):
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            block = _yaml(item, indent + 2)
            lines.append(f"{pad}- {block[0].lstrip()}")
            lines.extend(block[1:])
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return lines


def _size_category(n: int) -> str:
    """The Hub's size tag."""
    for limit, tag in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return tag
    return "100K<n<1M"


def _how_to_train(metadata: dict, recipe: dict, whitening: str) -> str:
    """The card's instructions: the recipe of an ordinary set, or where an LD RR set's is."""
    normalise = (f"Normalise each image as `(pixel / 255 - mean) / std` per channel, with mean "
                 f"{metadata['mean']} and std {metadata['std']}.{whitening}")
    if recipe.get("model_kind") == "ridge_regression":
        return (f"{normalise} These labels were learned for ridge-regression models (LD RR): a "
                f"{metadata['architecture']} feature extractor with a closed-form ridge "
                f"classifier, trained with their own recipe (in the YAML above), which a plain "
                f"cross-entropy loop is not. To reach the accuracy above, train with "
                f"kerasdistill: `python -m experiments.train --distilled=FOLDER` on the TFDS "
                f"export of this set (its docs/method.md section 2b says how the models "
                f"train); ordinary models trained on these labels score lower.")
    return (f"{normalise} Then train `{recipe['optimizer']}` at learning rate "
            f"{recipe['learning_rate']} for {recipe['num_train_steps']} steps of "
            f"{recipe['batch_size']} images drawn at random, with the soft labels as "
            f"cross-entropy targets (augmentation: {recipe.get('augment') or 'none'}).")


def dataset_card(distilled: DistilledSet) -> str:
    """The folder's README.md: YAML metadata for the Hub and `datasets`, then prose."""
    metadata = distilled.metadata
    recipe = metadata["recipe"]
    accuracy = {"mean_percent": round(100 * float(metadata["test_accuracy_mean"]), 2),
                "std_percent": round(100 * float(metadata["test_accuracy_std"]), 2),
                "models": int(metadata.get("test_repetitions", 0)),
                "measured_on": f"{metadata['target']}'s test split" + (
                    f" ({metadata['target_split']} re-split)" if metadata.get(
                        "target_split", "official") != "official" else "")}
    header = {
        "pretty_name": f"kerasdistill distilled set: {len(distilled)} {metadata['source']} "
                       f"images labelled for {metadata['target']}",
        "tags": ["dataset-distillation", "label-distillation", "soft-labels", "kerasdistill"],
        "size_categories": [_size_category(len(distilled))],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
        "dataset_info": {
            "features": [{"name": "image", "dtype": "image"},
                         {"name": "soft_label", "sequence": "float32",
                          "length": distilled.num_classes},
                         {"name": "source_index", "dtype": "int64"},
                         {"name": "source_label", "dtype": "int64"}],
            "splits": [{"name": "train", "num_examples": len(distilled)}]},
        "kerasdistill": {
            "target": metadata["target"], "source": metadata["source"],
            "num_classes": distilled.num_classes, "class_names": metadata["class_names"],
            "image_shape": metadata["image_shape"],
            "normalisation": {"mean": metadata["mean"], "std": metadata["std"],
                              "whitening": recipe.get("whitening", "none")},
            "recipe": recipe, "architecture": metadata["architecture"],
            "method": metadata["method"], "seed": metadata["seed"],
            "test_accuracy": accuracy,
            "kerasdistill_version": metadata.get("kerasdistill_version")},
    }
    whitening = ("" if recipe.get("whitening", "none") == "none" else
                 " Then whiten: the recipe's ZCA statistics are in the TFDS/npz export of this "
                 "set (zca_whitening.npz), not in this folder.")
    body = f"""
# Distilled set: {len(distilled)} {metadata['source']} images labelled for {metadata['target']}

Made by kerasdistill (label distillation, Bohdal, Yang and Hospedales
2020): the images are real {metadata['source']} training images; each `soft_label` was learned
so that a {metadata['architecture']} trained from scratch on these images alone does well on
{metadata['target']}. Models trained on it with its recipe scored
**{accuracy['mean_percent']:.2f} +- {accuracy['std_percent']:.2f} %** on {accuracy['measured_on']}
({accuracy['models']} models).

## Train on it

{_how_to_train(metadata, recipe, whitening)}
The whole recipe is in the YAML above and in `distilled_set.json`.

```python
import pandas as pd
frame = pd.read_parquet("data/train-00000-of-00001.parquet")
# frame.image[i]["bytes"] is a PNG; frame.soft_label[i] the label vector
```
"""
    return "---\n" + "\n".join(_yaml(header)) + "\n---\n" + body


def write_hf_dataset(distilled: DistilledSet, path: str) -> str:
    """Writes `distilled` as a Hugging Face `datasets` folder at `path` (replacing it whole,
    atomically; it must be absent or a folder this function wrote)."""
    pa = require_pyarrow()
    check_replaceable(path, formats=(FORMAT,))
    table = _table(distilled)
    with atomic_directory(path) as tmp:
        os.makedirs(os.path.join(tmp, "data"))
        pa.parquet.write_table(table, os.path.join(tmp, SHARD))
        with open(os.path.join(tmp, CARD), "w", encoding="utf-8") as card:
            card.write(dataset_card(distilled))
        write_json_atomic(os.path.join(tmp, METADATA_FILE), {
            **distilled.metadata, "format": FORMAT, "num_examples": len(distilled)})
    return path
