"""experiments.export --format=hf: Parquet and a dataset card, read back without kerasdistill."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from kerasdistill.errors import DistillError
from tests.conftest import assert_one_error, run_cli

parquet = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the hf extra) is not installed")


def _written(tmp_path, name="mnist/n10/ld"):
    from kerasdistill import load_distilled
    from kerasdistill.export.hf_format import write_hf_dataset
    distilled = load_distilled(name)
    return distilled, write_hf_dataset(distilled, str(tmp_path / "hf"))


def _decode_png(payload: bytes) -> np.ndarray:
    import tensorflow as tf
    return tf.io.decode_png(payload).numpy()


def test_the_parquet_holds_the_npz_images_and_labels(tmp_path):
    """Read back with pyarrow alone (and pandas where installed), against the set's npz."""
    distilled, path = _written(tmp_path, "mnist/n100/horizon")
    table = parquet.read_table(os.path.join(path, "data", "train-00000-of-00001.parquet"))
    npz = np.load(os.path.join(distilled_folder("mnist/n100/horizon"), "distilled_set.npz"))
    columns = table.to_pydict()
    images = np.stack([_decode_png(image["bytes"]) for image in columns["image"]])
    np.testing.assert_array_equal(images, npz["images"])
    np.testing.assert_array_equal(np.asarray(columns["soft_label"], np.float32),
                                  npz["soft_labels"])
    np.testing.assert_array_equal(columns["source_index"], npz["source_indices"])
    np.testing.assert_array_equal(columns["source_label"], npz["source_labels"])
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["soft_label"]["length"] == 10
    if _has("pandas"):
        import pandas
        frame = pandas.read_parquet(os.path.join(path, "data"))
        np.testing.assert_array_equal(np.stack(frame.soft_label.to_numpy()),
                                      npz["soft_labels"])


def distilled_folder(name):
    from kerasdistill.sets import find_set
    return find_set(name).path


def _has(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def test_the_card_says_how_to_train_on_the_set(tmp_path):
    distilled, path = _written(tmp_path)
    with open(os.path.join(path, "README.md")) as f:
        card = f.read()
    header, body = card.split("\n---\n", 1)
    assert header.startswith("---\n")
    for line in ("configs:", "  - config_name: \"default\"",
                 "        path: \"data/train-*.parquet\"", "  features:",
                 "    - name: \"image\"", "      dtype: \"image\"",
                 f"    mean: {json.dumps(distilled.metadata['mean'])}",
                 "      num_examples: 10", "kerasdistill:", "  recipe:",
                 "    adam_epsilon: 1.0e-08"):
        assert line in header.splitlines(), line
    mean = 100 * distilled.metadata["test_accuracy_mean"]
    assert f"    mean_percent: {round(mean, 2)}" in header.splitlines()
    assert f"**{mean:.2f} +- " in body
    with open(os.path.join(path, "distilled_set.json")) as f:
        assert json.load(f)["format"] == "kerasdistill.distilled_set.hf"


def test_writing_again_replaces_only_an_hf_set(tmp_path):
    from kerasdistill import load_distilled
    from kerasdistill.export.hf_format import write_hf_dataset
    _written(tmp_path)
    write_hf_dataset(load_distilled("mnist/n10/ld"), str(tmp_path / "hf"))  # its own: fine
    os.makedirs(tmp_path / "other")
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DistillError, match="exists and is not a distilled set"):
        write_hf_dataset(load_distilled("mnist/n10/ld"), str(tmp_path / "other"))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_without_pyarrow_one_error_says_how_to_install_it(monkeypatch, tmp_path):
    from kerasdistill.export.hf_format import require_pyarrow
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DistillError, match=r'pip install "kerasdistill\[hf\]"'):
        require_pyarrow()


def test_the_export_command_writes_a_ready_set_as_hf(tmp_path):
    result = run_cli("experiments.export", "--distilled=mnist/n10/ld", "--format=hf",
                     f"--output_dir={tmp_path}/hf")
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.exists(tmp_path / "hf" / "data" / "train-00000-of-00001.parquet")
    missing = run_cli("experiments.export", "--distilled=mnist/n10/ld", "--format=hf")
    assert_one_error(missing, "--distilled needs --output_dir")
    both = run_cli("experiments.export", "--distilled=mnist/n10/ld", "--model_dir=x")
    assert_one_error(both, "give one of --model_dir")


@pytest.mark.parametrize("name", ["mnist/n100/horizon_crop", "emnist_letters_to_mnist/n100/ld_rr"])
def test_the_cards_yaml_reads_back_as_the_sets_record(name):
    """Parsed by a YAML 1.1 reader (PyYAML, where installed): the kerasdistill block is the
    set's own recipe and normalisation, numbers as numbers."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    from kerasdistill import load_distilled
    from kerasdistill.export.hf_format import dataset_card
    distilled = load_distilled(name)
    card = dataset_card(distilled)
    header = yaml.safe_load(card.split("\n---\n", 1)[0].removeprefix("---\n"))
    block = header["kerasdistill"]
    assert block["recipe"] == distilled.metadata["recipe"]
    assert block["normalisation"]["mean"] == distilled.metadata["mean"]
    assert block["test_accuracy"]["models"] == 20
    assert header["dataset_info"]["splits"] == [{"name": "train", "num_examples": 100}]
    # A fixed-length list, as the Parquet schema says: datasets reads `length` beside it.
    assert header["dataset_info"]["features"][1] == {
        "name": "soft_label", "sequence": "float32", "length": distilled.num_classes}
    ridge = distilled.metadata["recipe"]["model_kind"] == "ridge_regression"
    assert ("learned for ridge-regression models" in card) == ridge
    assert ("cross-entropy targets" in card) == (not ridge)
