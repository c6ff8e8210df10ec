"""Distilled sets: the TFDS round trip, load_distilled + model.fit, export of old runs,
label statistics and pictures, the plain-TFDS example of docs/distilled-sets.md."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from kerasdistill.errors import DistillError
from kerasdistill.export.distilled_set import DistilledSet, load_distilled, write_distilled_set
from kerasdistill.export.label_analysis import analyse_labels, label_entropy, top_k
from kerasdistill.export.run_export import export_run
from tests.conftest import (REPO_ROOT, assert_one_error, make_finished_runs, run_cli,
                            run_folder_without_its_set, write_fake_npz)


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A tiny LD run and a true-label baseline run on fake MNIST, made once."""
    return make_finished_runs(tmp_path_factory.mktemp("runs"),
                              {"ld": {}, "true": {"baseline": "true_labels"}},
                              num_base_examples=20, inner_batch_size=10, epochs=2, seed=3)


def test_tfds_round_trip_without_kerasdistill(finished_runs):
    import tensorflow_datasets as tfds
    data_dir, runs = finished_runs
    model_dir, results = runs["ld"]
    builder = tfds.builder_from_directory(os.path.join(model_dir, "distilled_set"))
    assert builder.info.splits["train"].num_examples == 20
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    raw = np.load(os.path.join(data_dir, "mnist.npz"))
    indices = [int(e["source_index"]) for e in examples]
    assert indices == results["base_indices"]  # one example per base example, in order
    for example in examples:
        assert example["image"].dtype == np.uint8 and example["image"].shape == (28, 28, 1)
        np.testing.assert_array_equal(example["image"][..., 0],
                                      raw["x_train"][example["source_index"]])
        assert example["source_label"] == raw["y_train"][example["source_index"]]
    labels = np.stack([e["soft_label"] for e in examples])
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels, np.asarray(results["labels"], np.float32))
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
    metadata = builder.info.metadata
    assert metadata["num_train_steps"] == results["num_train_steps"]
    assert metadata["inner_batch_size"] == 10 and metadata["target"] == "mnist"
    assert metadata["recipe"]["model_kind"] == "ordinary"
    assert metadata["recipe"]["optimizer"] == "adam"
    assert metadata["mean"] == [0.1307] and metadata["std"] == [0.3081]
    assert metadata["test_accuracy_mean"] == results["test_accuracy_mean"]
    with open(os.path.join(model_dir, "distilled_set", "distilled_set.json")) as f:
        assert json.load(f) == json.loads(json.dumps(dict(metadata)))
    npz = np.load(os.path.join(model_dir, "distilled_set", "distilled_set.npz"))
    np.testing.assert_array_equal(npz["soft_labels"], labels)
    np.testing.assert_array_equal(npz["source_indices"], indices)
    np.testing.assert_array_equal(npz["images"], np.stack([e["image"] for e in examples]))


def test_load_distilled_and_model_fit(finished_runs):
    import keras

    from kerasdistill.models import ModelFactory
    data_dir, runs = finished_runs
    distilled = load_distilled(os.path.join(runs["true"][0], "distilled_set"))
    assert distilled.images.shape == (20, 28, 28, 1) and distilled.soft_labels.shape == (20, 10)
    assert distilled.num_train_steps == runs["true"][1]["num_train_steps"]
    expected = (distilled.images.astype(np.float32) / 255 - 0.1307) / 0.3081
    images, labels = next(iter(distilled.as_dataset(20, shuffle=False)))
    np.testing.assert_allclose(images.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), distilled.soft_labels)
    raw_images, _ = next(iter(distilled.as_dataset(20, shuffle=False, normalize=False)))
    np.testing.assert_array_equal(raw_images.numpy(), distilled.images)
    # Same seed, same order; repeat gives full batches forever.
    first = [b[1].numpy() for b in distilled.as_dataset(5, seed=1).take(4)]
    again = [b[1].numpy() for b in distilled.as_dataset(5, seed=1).take(4)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len(list(distilled.as_dataset(8, repeat=True).take(7))) == 7
    with pytest.raises(DistillError, match="batch_size"):
        distilled.as_dataset(21)

    model = ModelFactory("lenet", (28, 28, 1), 10).build(seed=0)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(distilled.as_dataset(10, seed=0, repeat=True), epochs=1, steps_per_epoch=150,
              verbose=0)
    raw = np.load(os.path.join(data_dir, "mnist.npz"))
    test_images = (raw["x_test"][..., None].astype(np.float32) / 255 - 0.1307) / 0.3081
    predictions = model.predict(test_images, verbose=0).argmax(1)
    assert np.mean(predictions == raw["y_test"]) > 0.6  # the fake classes are easy


def test_kerasdistill_top_level_load(finished_runs):
    import kerasdistill
    distilled = kerasdistill.load_distilled(os.path.join(finished_runs[1]["ld"][0],
                                                         "distilled_set"))
    assert isinstance(distilled, kerasdistill.DistilledSet)


def test_export_rebuilds_an_old_run_identically(finished_runs, tmp_path):
    """A run made before distilled sets existed: only config.json and results.json."""
    data_dir, runs = finished_runs
    model_dir, _ = runs["ld"]
    old = tmp_path / "old_run"
    run_folder_without_its_set(model_dir, old)
    products = export_run(str(old), data_dir=data_dir)
    exported, original = (np.load(os.path.join(d, "distilled_set", "distilled_set.npz"))
                          for d in (old, model_dir))
    for key in ("images", "soft_labels", "source_indices", "source_labels"):
        np.testing.assert_array_equal(exported[key], original[key])
    assert sorted(os.listdir(old / "plots")) == sorted(products.plots)
    elsewhere = tmp_path / "shared_set"
    export_run(str(old), output_dir=str(elsewhere), data_dir=data_dir, plots_dir="")
    assert load_distilled(str(elsewhere)).num_train_steps == products.distilled.num_train_steps


def test_export_of_a_finished_run_reads_no_data_and_builds_no_model(finished_runs, tmp_path,
                                                                    monkeypatch):
    """A run hands its set everything it needs: exporting copies it, whatever the data."""
    import kerasdistill.data.loading as loading
    import kerasdistill.export.rebuild as rebuild
    from kerasdistill.models.registry import ModelFactory

    def refuse(*args, **kwargs):
        raise AssertionError("the export read a dataset or built a model")

    for module, name in ((loading, "load_dataset"), (rebuild, "load_dataset"),
                         (ModelFactory, "build")):
        monkeypatch.setattr(module, name, refuse)
    _, runs = finished_runs
    model_dir, results = runs["ld"]
    copy = tmp_path / "copy"
    products = export_run(model_dir, output_dir=str(copy), data_dir="/no/such/folder",
                          plots_dir=str(tmp_path / "plots"))
    written = os.path.join(model_dir, "distilled_set")
    with np.load(os.path.join(written, "distilled_set.npz")) as made, \
            np.load(copy / "distilled_set.npz") as again:
        assert made.files == again.files
        for key in made.files:
            assert made[key].dtype == again[key].dtype
            assert made[key].tobytes() == again[key].tobytes()
    with open(os.path.join(written, "distilled_set.json")) as a, \
            open(copy / "distilled_set.json") as b:
        assert json.load(a) == json.load(b)
    assert sorted(products.plots) == sorted(os.listdir(tmp_path / "plots")) != []
    assert products.label_analysis == results["label_analysis"]
    # In place: the run's own folder, the same labels.
    export_run(model_dir, plots_dir="")
    np.testing.assert_array_equal(load_distilled(written).soft_labels,
                                  np.asarray(results["labels"], np.float32))


def test_export_refuses_a_set_that_is_not_the_runs(finished_runs, tmp_path):
    _, runs = finished_runs
    folder = tmp_path / "run"
    shutil.copytree(runs["ld"][0], folder, ignore=shutil.ignore_patterns("checkpoint", "*.lock"))
    shutil.rmtree(folder / "distilled_set")
    shutil.copytree(os.path.join(runs["true"][0], "distilled_set"), folder / "distilled_set")
    with pytest.raises(DistillError, match="does not hold the labels of the run's results.json"):
        export_run(str(folder), output_dir=str(tmp_path / "out"), plots_dir="")
    assert not (tmp_path / "out").exists()


def test_export_refuses_data_that_do_not_match_the_run(finished_runs, tmp_path):
    _, runs = finished_runs
    other_data = tmp_path / "other"
    other_data.mkdir()
    write_fake_npz(str(other_data / "mnist.npz"), seed=5)
    old = run_folder_without_its_set(runs["ld"][0], tmp_path / "old_run")
    with pytest.raises(DistillError, match="do not match the run"):
        export_run(old, output_dir=str(tmp_path / "out"), data_dir=str(other_data))
    assert not (tmp_path / "out").exists()
    with pytest.raises(DistillError, match="not a finished run"):
        export_run(str(tmp_path))


def test_export_never_replaces_a_folder_that_is_not_a_set(finished_runs, tmp_path):
    from tests.test_trust import _snapshot
    data_dir, runs = finished_runs
    model_dir = runs["ld"][0]
    before = _snapshot(model_dir)
    for output_dir in (model_dir, os.path.dirname(model_dir)):  # the run itself, runs/
        with pytest.raises(DistillError, match="is not a distilled set"):
            export_run(model_dir, output_dir=output_dir, data_dir=data_dir, plots_dir="")
    assert _snapshot(model_dir) == before


def test_export_refuses_a_run_folder_a_process_holds(finished_runs, tmp_path):
    from kerasdistill.files import exclusive_folder
    from tests.test_trust import _snapshot
    data_dir, runs = finished_runs
    model_dir = runs["ld"][0]
    results, aside = os.path.join(model_dir, "results.json"), tmp_path / "results.json"
    before = _snapshot(model_dir)
    with exclusive_folder(model_dir):
        # As a run extending the folder would: it has set its results.json aside.
        shutil.move(results, aside)
        try:
            with pytest.raises(DistillError, match="is in use by another process"):
                export_run(model_dir, output_dir=str(tmp_path / "out"), data_dir=data_dir)
        finally:
            shutil.move(aside, results)
    assert not (tmp_path / "out").exists()
    assert _snapshot(model_dir) == {**before, ".run.lock": f"{os.getpid()}\n".encode()}


def test_no_run_can_start_in_a_folder_while_it_is_exported(finished_runs, tmp_path,
                                                           monkeypatch):
    import kerasdistill.export.run_export as run_export
    from kerasdistill.files import exclusive_folder
    data_dir, runs = finished_runs
    model_dir = runs["ld"][0]
    real_write = run_export.write_distilled_set
    refusals = []

    def a_run_starts_mid_export(*args, **kwargs):
        with pytest.raises(DistillError, match="is in use by another process") as refusal:
            with exclusive_folder(model_dir):
                pass
        refusals.append(refusal)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(run_export, "write_distilled_set", a_run_starts_mid_export)
    export_run(model_dir, output_dir=str(tmp_path / "out"), data_dir=data_dir, plots_dir="")
    assert len(refusals) == 1 and (tmp_path / "out").is_dir()
    with exclusive_folder(model_dir):  # free again once the export has ended
        pass


def test_committed_run_of_kerasdistill_0_1_exports(shared_data_dir, tmp_path):
    """results/mnist_n100_ld_f32_s1234 was made before distilled sets existed."""
    run = os.path.join(REPO_ROOT, "results", "mnist_n100_ld_f32_s1234")
    with open(os.path.join(run, "results.json")) as f:
        results = json.load(f)
    products = export_run(run, output_dir=str(tmp_path / "set"), data_dir=shared_data_dir,
                          plots_dir="")
    distilled = load_distilled(str(tmp_path / "set"))
    raw = np.load(os.path.join(shared_data_dir, "mnist.npz"))
    np.testing.assert_array_equal(distilled.images[..., 0], raw["x_train"][results["base_indices"]])
    np.testing.assert_array_equal(distilled.soft_labels, np.asarray(results["labels"], np.float32))
    assert distilled.num_train_steps == 328 and distilled.metadata["seed"] == 1234
    assert products.label_analysis["within_dataset"]


def test_damaged_sets_give_clear_errors(finished_runs, tmp_path):
    source = os.path.join(finished_runs[1]["ld"][0], "distilled_set")
    with pytest.raises(DistillError, match="not a folder"):
        load_distilled(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DistillError, match="no distilled_set.json"):
        load_distilled(str(tmp_path / "empty"))
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    record = next(p for p in os.listdir(broken) if ".tfrecord" in p)
    with open(broken / record, "r+b") as f:
        f.truncate(os.path.getsize(broken / record) // 2)
    with pytest.raises(DistillError, match="cannot read the TFDS records"):
        load_distilled(str(broken))


def test_distilled_set_checks_its_contents():
    metadata = {"target": "mnist", "num_classes": 3, "image_shape": [2, 2, 1], "mean": [0.0],
                "std": [1.0], "num_train_steps": 5, "inner_batch_size": 2,
                "recipe": {"model_kind": "ordinary"}}
    images = np.zeros((2, 2, 2, 1), np.uint8)
    good = np.array([[1, 0, 0], [0.2, 0.3, 0.5]], np.float32)
    DistilledSet(images, good, np.arange(2), np.arange(2), metadata)
    for labels in (good * 2, np.array([[1, 0, 0], [np.nan, 0, 1]], np.float32), good[:, :2],
                   np.array([[1.5, -0.5, 0], [0, 0, 1]], np.float32)):
        with pytest.raises(DistillError):
            DistilledSet(images, labels, np.arange(2), np.arange(2), metadata)
    with pytest.raises(DistillError, match="uint8"):
        DistilledSet(images.astype(np.float32), good, np.arange(2), np.arange(2), metadata)
    with pytest.raises(DistillError, match="lacks"):
        DistilledSet(images, good, np.arange(2), np.arange(2), {"target": "mnist"})


def test_label_statistics_against_hand_computed_values():
    labels = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.6, 0.3],
                       [0.5, 0.5, 0.0]])
    source = np.array([0, 1, 1, 0])
    np.testing.assert_allclose(label_entropy(labels)[:2], [0.0, np.log(3)], atol=1e-12)
    assert label_entropy(labels)[2] == pytest.approx(
        -(0.1 * np.log(0.1) + 0.6 * np.log(0.6) + 0.3 * np.log(0.3)))
    assert top_k(labels, 2)[2] == [[1, 0.6], [2, 0.3]]
    analysis = analyse_labels(labels, source, 3, within_dataset=True)
    np.testing.assert_allclose(analysis["mass_by_source_class"],
                               [[0.75, 0.25, 0.0], [(1 / 3 + 0.1) / 2, (1 / 3 + 0.6) / 2,
                                                    (1 / 3 + 0.3) / 2], [0, 0, 0]])
    assert analysis["source_class_counts"] == [2, 2, 0]
    np.testing.assert_allclose(analysis["true_class_mass"], [1.0, 1 / 3, 0.6, 0.5])
    assert analysis["top_label_is_true_class"] == pytest.approx(0.75)  # row 1 ties to class 0
    assert analysis["largest_off_diagonal"] == {"source_class": 1, "target_class": 2,
                                                "mean_mass": pytest.approx((1 / 3 + 0.3) / 2)}
    across = analyse_labels(labels, source, 2, within_dataset=False)
    assert "true_class_mass" not in across and len(across["mass_by_source_class"]) == 2


def test_runs_write_pictures_and_statistics(finished_runs):
    for name in ("ld", "true"):
        model_dir, results = finished_runs[1][name]
        assert results["plots"] == [f"plots/{p}" for p in (
            "base_images.png", "label_mass_heatmap.png", "validation_curve.png",
            "label_statistics.png")]
        for plot in results["plots"]:
            with open(os.path.join(model_dir, plot), "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        analysis = results["label_analysis"]
        np.testing.assert_allclose(analysis["entropy_nats"],
                                   label_entropy(np.asarray(results["labels"])), rtol=1e-5)
    baseline = finished_runs[1]["true"][1]["label_analysis"]
    assert baseline["top_label_is_true_class"] == 1.0
    assert baseline["entropy_summary"]["max"] == 0.0


@pytest.mark.parametrize("target,source", [("cifar10", "mnist"), ("cifar100", "emnist_letters")])
def test_pictures_of_colour_many_class_and_cross_dataset_sets(tmp_path, target, source):
    from kerasdistill.data.registry import get_dataset_spec
    from kerasdistill.export.plots import write_plots
    target_spec, source_spec = get_dataset_spec(target), get_dataset_spec(source)
    rng = np.random.default_rng(0)
    labels = rng.dirichlet(np.ones(target_spec.num_classes), size=30).astype(np.float32)
    source_labels = rng.integers(0, source_spec.num_classes, 30)
    metadata = {"target": target, "source": source, "num_classes": target_spec.num_classes,
                "image_shape": list(target_spec.image_shape),
                "mean": list(target_spec.mean), "std": list(target_spec.std),
                "num_train_steps": 40, "inner_batch_size": 10, "recipe": {},
                "class_names": target_spec.class_name_list(),
                "source_class_names": source_spec.class_name_list()}
    distilled = DistilledSet(rng.integers(0, 256, (30, *target_spec.image_shape), np.uint8),
                             labels / labels.sum(1, keepdims=True), np.arange(30),
                             source_labels, metadata)
    analysis = analyse_labels(distilled.soft_labels, source_labels, source_spec.num_classes,
                              within_dataset=False)
    curve = [{"steps": s, "validation_error": 0.9 - s / 1000} for s in (10, 25, 50)]
    names = write_plots(distilled, analysis, curve, str(tmp_path / "plots"))
    assert len(names) == 4
    for name in names:
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_docs_example_is_the_plain_keras_script():
    """The plain TFDS/Keras example of docs/distilled-sets.md (the code block between its
    markers) is the body of experiments/train_plain_keras.py, line for line."""
    with open(os.path.join(REPO_ROOT, "docs", "distilled-sets.md")) as f:
        doc = f.read()
    with open(os.path.join(REPO_ROOT, "experiments", "train_plain_keras.py")) as f:
        script = f.read()
    # The script's markers may name the README (where the example used to be) or the docs.
    body = re.search(r"# --- (?:README|docs) example: start ---\n(.*?)"
                     r"    # --- (?:README|docs) example: end", script, re.S).group(1)
    snippet = "\n".join(line[4:] for line in body.splitlines())
    block = re.search(r"<!-- plain Keras example: start -->\n```python\n(.*?)```\n"
                      r"<!-- plain Keras example: end -->", doc, re.S)
    assert block, "docs/distilled-sets.md has lost the plain Keras example or its markers"
    assert block.group(1).strip() == snippet.strip()


def test_plain_keras_script_trains_on_a_set(finished_runs):
    from experiments.train_plain_keras import train_one
    data_dir, runs = finished_runs
    accuracy = train_one(os.path.join(runs["true"][0], "distilled_set"),
                         os.path.join(data_dir, "mnist.npz"), seed=0)
    assert accuracy > 0.5  # true labels of the easy fake classes


def test_the_export_command_draws_a_sets_pictures_and_refuses_rebuild_options(tmp_path):
    """--distilled: --plots_dir draws the pictures a set holds what for (not the run's
    validation curve); --data_dir would rebuild nothing, so it is refused, not ignored."""
    result = run_cli("experiments.export", "--distilled=mnist/n10/ld",
                     f"--output_dir={tmp_path}/set", f"--plots_dir={tmp_path}/plots")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "plots")) == [
        "base_images.png", "label_mass_heatmap.png", "label_statistics.png"]
    assert os.path.exists(tmp_path / "set" / "distilled_set.json")
    for flag in ("--data_dir=elsewhere", "--download"):
        refused = run_cli("experiments.export", "--distilled=mnist/n10/ld", flag,
                          f"--output_dir={tmp_path}/other")
        assert_one_error(refused, f"{flag.split('=')[0]} is for rebuilding a run's set")
        assert not os.path.exists(tmp_path / "other")


def test_a_set_without_what_its_pictures_name_is_refused_before_anything_is_written(tmp_path):
    """A set made by hand may hold only the required metadata: --plots_dir then gives one
    error, and no set is written half-drawn."""
    from kerasdistill.export.run_export import PLOT_METADATA
    ready = load_distilled("mnist/n10/ld")
    bare = DistilledSet(images=ready.images, soft_labels=ready.soft_labels,
                        source_indices=ready.source_indices, source_labels=ready.source_labels,
                        metadata={key: value for key, value in ready.metadata.items()
                                  if key not in PLOT_METADATA})
    write_distilled_set(bare, str(tmp_path / "bare"))
    refused = run_cli("experiments.export", f"--distilled={tmp_path / 'bare'}",
                      f"--output_dir={tmp_path}/out", f"--plots_dir={tmp_path}/plots")
    assert_one_error(refused, "cannot be drawn: its metadata lacks source, class_names, "
                              "source_class_names")
    assert not os.path.exists(tmp_path / "out") and not os.path.exists(tmp_path / "plots")
