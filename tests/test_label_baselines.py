"""Fixed labellings: teacher labels, uniform labels and the cross-dataset class mapping."""

import dataclasses
import itertools
import os

import numpy as np
import pytest

from kerasdistill.errors import DistillError
from kerasdistill.evaluation.label_baselines import TeacherBudget, best_class_mapping, softmax_at
from kerasdistill.experiment import resolve, run_experiment
from tests.conftest import tiny_config, write_fake_npz


def test_softmax_at_a_temperature_matches_the_formula():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 30.0]])
    for temperature in (0.5, 1.0, 4.0):
        expected = np.exp(logits / temperature)
        expected /= expected.sum(1, keepdims=True)
        np.testing.assert_allclose(softmax_at(logits, temperature), expected, rtol=1e-6)
    np.testing.assert_allclose(softmax_at(logits, 1e6), 1 / 3, atol=1e-4)


def _brute_force_best(confusion):
    num_target, num_source = confusion.shape
    best = max(itertools.permutations(range(num_target), num_source),
               key=lambda targets: confusion[list(targets), range(num_source)].sum())
    return confusion[list(best), range(num_source)].sum()


@pytest.mark.parametrize("num_target,num_source", [(5, 5), (6, 4)])
def test_best_class_mapping_is_the_best_one_to_one_map(num_target, num_source):
    rng = np.random.default_rng(num_target)
    for _ in range(5):
        confusion = rng.integers(0, 50, (num_target, num_source))
        mapping = best_class_mapping(confusion)
        assert len(set(mapping.tolist())) == num_source  # one-to-one
        right = confusion[mapping, np.arange(num_source)].sum()
        assert right == _brute_force_best(confusion)


def test_more_source_classes_cover_every_target_and_the_rest_go_to_their_best():
    confusion = np.array([[9, 0, 5, 0], [0, 8, 0, 1]])  # 2 target classes, 4 source classes
    mapping = best_class_mapping(confusion)
    assert set(mapping.tolist()) == {0, 1}
    np.testing.assert_array_equal(mapping, [0, 1, 0, 1])
    # Covering target 1 by its best source alone is not the best map here.
    np.testing.assert_array_equal(best_class_mapping(np.array([[10, 9, 0], [0, 8, 1]])),
                                  [0, 0, 1])
    rng = np.random.default_rng(7)
    for _ in range(5):  # against every map from 5 source classes onto 3 target classes
        confusion = rng.integers(0, 30, (3, 5))
        onto = [m for m in itertools.product(range(3), repeat=5) if len(set(m)) == 3]
        best = max(confusion[list(m), range(5)].sum() for m in onto)
        mapping = best_class_mapping(confusion)
        assert set(mapping.tolist()) == {0, 1, 2}
        assert confusion[mapping, np.arange(5)].sum() == best


def test_teacher_budget_refuses_bad_settings():
    with pytest.raises(DistillError, match="positive"):
        TeacherBudget(epochs=0)
    with pytest.raises(DistillError, match="temperatures"):
        TeacherBudget(temperatures=(1.0, 0.0))


def _data_dir(tmp_path, source_permutation=None):
    """Fake MNIST, and a fake Fashion-MNIST whose class c draws the blob of MNIST's
    class permutation[c] (the best mapping back is then known)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_fake_npz(str(data_dir / "mnist.npz"))
    path = write_fake_npz(str(data_dir / "fashion_mnist.npz"), seed=1)
    if source_permutation is not None:
        arrays = dict(np.load(path))
        inverse = np.argsort(source_permutation)
        for key in ("y_train", "y_test"):
            arrays[key] = inverse[arrays[key]]  # blob of class t now labelled inverse[t]
        np.savez(path, **arrays)
    return str(data_dir)


def test_teacher_labels_are_the_teachers_softmax_at_the_chosen_temperature(tmp_path):
    data_dir = _data_dir(tmp_path)
    config = tiny_config(data_dir, baseline="teacher", teacher_epochs=10,
                         teacher_temperatures=(1.0, 1000.0))
    results = run_experiment(config, str(tmp_path / "teacher"), verbose=False)
    teacher = results["teacher"]
    assert teacher["epoch_kept"] == 1 + int(np.argmax(teacher["validation_accuracy_per_epoch"]))
    assert teacher["validation_accuracy"] > 0.8  # the fake classes are easy
    assert teacher["temperature"] in (1.0, 1000.0)
    search = {c["temperature"]: c["validation_error"] for c in teacher["temperature_search"]}
    assert search[teacher["temperature"]] == min(search.values())
    labels = np.asarray(results["labels"])
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-5)
    # A confident teacher of easy classes labels the base images by their own class.
    np.testing.assert_array_equal(labels.argmax(1), results["base_source_labels"])
    assert results["num_train_steps"] == [c for c in teacher["temperature_search"]
                                          if c["temperature"] == teacher["temperature"]][0][
        "num_train_steps"]


def test_teacher_labels_are_exactly_the_softmax_of_the_teachers_logits(tmp_path):
    from kerasdistill.data.loading import load_dataset
    from kerasdistill.data.splits import split_target
    from kerasdistill.distill.registry import build_solver
    from kerasdistill.evaluation.label_baselines import teacher_labels
    from kerasdistill.models import ModelFactory
    from kerasdistill.training.trainer import EvaluationTrainer
    target = split_target(load_dataset("mnist", _data_dir(tmp_path)), seed=0, num_validation=100)
    base = target.train_images[:10]
    logits = np.random.default_rng(0).normal(0, 3, (10, 10)).astype(np.float32)

    class FixedTeacher:  # what teacher_labels uses of a Keras model
        def predict(self, images, verbose=0):
            assert len(images) == 10
            return logits

    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    trainer = EvaluationTrainer(solver, base, inner_batch_size=5)
    budget = TeacherBudget(temperatures=(0.5, 2.0, 50.0))
    labels, steps, record = teacher_labels(FixedTeacher(), base, trainer, budget, [10, 25], 3,
                                           target)
    best = min(record["temperature_search"], key=lambda c: c["validation_error"])
    assert record["temperature"] == best["temperature"] and steps == best["num_train_steps"]
    np.testing.assert_allclose(labels, softmax_at(logits, best["temperature"]), rtol=1e-6)
    assert [c["temperature"] for c in record["temperature_search"]] == [0.5, 2.0, 50.0]


def test_the_teachers_epoch_is_searched_with_its_temperature(tmp_path):
    """epoch_choice="search": every epoch's teacher and every temperature are scored on
    validation, and the labels are the winner's softmax."""
    from kerasdistill.data.loading import load_dataset
    from kerasdistill.data.splits import split_target
    from kerasdistill.distill.registry import build_solver
    from kerasdistill.evaluation.label_baselines import teacher_labels
    from kerasdistill.models import ModelFactory
    from kerasdistill.training.trainer import EvaluationTrainer
    target = split_target(load_dataset("mnist", _data_dir(tmp_path)), seed=0, num_validation=100)
    base = target.train_images[:10]
    rng = np.random.default_rng(1)
    # Epoch 1's teacher is confidently wrong, epoch 2's confidently right.
    wrong = np.eye(10)[(target.train_labels[:10] + 1) % 10] * 8.0
    right = np.eye(10)[target.train_labels[:10]] * 8.0 + rng.normal(0, 0.1, (10, 10))

    class EpochTeacher:  # what teacher_labels uses of a Keras model
        weights = None

        def set_weights(self, weights):
            self.weights = weights

        def predict(self, images, verbose=0):
            return self.weights[0]

    solver = build_solver("second_order", ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    trainer = EvaluationTrainer(solver, base, inner_batch_size=5)
    budget = TeacherBudget(temperatures=(1.0, 4.0), epoch_choice="search")
    labels, steps, record = teacher_labels(EpochTeacher(), base, trainer, budget, [10, 25], 3,
                                           target, epoch_weights=[[wrong], [right]])
    search = record["temperature_search"]
    assert [(c["epoch"], c["temperature"]) for c in search] == [(1, 1.0), (1, 4.0), (2, 1.0),
                                                                 (2, 4.0)]
    best = min(search, key=lambda c: c["validation_error"])
    assert record["epoch_chosen"] == best["epoch"] == 2
    assert record["temperature"] == best["temperature"] and steps == best["num_train_steps"]
    np.testing.assert_allclose(labels, softmax_at(right, best["temperature"]), rtol=1e-6)
    with pytest.raises(DistillError, match="teacher_epoch_choice must be one of"):
        TeacherBudget(epoch_choice="last")


def test_a_searched_teachers_run_records_every_epoch(tmp_path):
    from kerasdistill.distill.identity import run_identity
    from kerasdistill.experiment import to_json_dict
    config = tiny_config(_data_dir(tmp_path), baseline="teacher", teacher_epochs=2,
                         teacher_temperatures=(1.0,), teacher_epoch_choice="search")
    teacher = run_experiment(config, str(tmp_path / "t"), verbose=False)["teacher"]
    assert [c["epoch"] for c in teacher["temperature_search"]] == [1, 2]
    assert teacher["epoch_chosen"] in (1, 2)
    # A new setting: in the identity where it is not the default, and only for a teacher.
    assert run_identity(to_json_dict(resolve(config)))["teacher_epoch_choice"] == "search"
    plain = dataclasses.replace(config, teacher_epoch_choice="best_accuracy")
    assert "teacher_epoch_choice" not in run_identity(to_json_dict(resolve(plain)))
    uniform = dataclasses.replace(config, baseline="uniform", source="fashion_mnist")
    assert "teacher_epoch_choice" not in run_identity(to_json_dict(resolve(uniform)))


def test_another_teacher_seed_is_another_teacher_on_the_same_base_images(tmp_path):
    """--teacher_seed moves the teacher only: the same base images, other labels; the
    run's own seed given explicitly is the default teacher."""
    from kerasdistill.distill.identity import run_identity
    from kerasdistill.experiment import to_json_dict
    config = tiny_config(_data_dir(tmp_path), baseline="teacher", teacher_epochs=1,
                         teacher_temperatures=(1.0,))
    runs = {name: run_experiment(dataclasses.replace(config, teacher_seed=seed),
                                 str(tmp_path / name), verbose=False)
            for name, seed in (("default", None), ("own", config.distill.seed), ("other", 5))}
    assert runs["default"]["base_indices"] == runs["other"]["base_indices"]
    np.testing.assert_array_equal(runs["default"]["labels"], runs["own"]["labels"])
    assert not np.allclose(runs["default"]["labels"], runs["other"]["labels"])
    assert "teacher_seed" not in run_identity(to_json_dict(resolve(config)))
    assert run_identity(to_json_dict(resolve(dataclasses.replace(
        config, teacher_seed=5))))["teacher_seed"] == 5


def test_a_high_temperature_teacher_gives_uniform_labels(tmp_path):
    config = tiny_config(_data_dir(tmp_path), baseline="teacher", teacher_epochs=1,
                         teacher_temperatures=(1e6,))
    labels = np.asarray(run_experiment(config, str(tmp_path / "t"), verbose=False)["labels"])
    np.testing.assert_allclose(labels, 0.1, atol=1e-4)


def test_uniform_baseline_has_uniform_labels_and_a_validated_step_count(tmp_path):
    results = run_experiment(tiny_config(_data_dir(tmp_path), baseline="uniform",
                                         source="fashion_mnist"),
                             str(tmp_path / "u"), verbose=False)
    np.testing.assert_allclose(results["labels"], 0.1)
    assert results["num_train_steps"] in [p["steps"] for p in results["validation_curve"]]


def test_class_mapping_finds_the_permutation_between_the_datasets(tmp_path):
    permutation = np.array([3, 7, 0, 9, 1, 2, 8, 4, 6, 5])  # source class c -> target class
    data_dir = _data_dir(tmp_path, source_permutation=permutation)
    config = tiny_config(data_dir, baseline="class_mapping", source="fashion_mnist",
                         num_base_examples=60, inner_batch_size=10)
    results = run_experiment(config, str(tmp_path / "map"), verbose=False)
    mapping = np.asarray(results["class_mapping"]["mapping"])
    sources = np.asarray(results["base_source_labels"])
    # Every source class among the base images (else its target would be a guess).
    assert len(np.unique(sources)) == 10
    np.testing.assert_array_equal(mapping, permutation)
    labels = np.asarray(results["labels"])
    np.testing.assert_array_equal(labels.argmax(1), permutation[sources])
    assert results["test_accuracy_mean"] > 0.5


@pytest.mark.parametrize("changes,message", [
    ({"baseline": "true_labels", "source": "fashion_mnist"}, "needs base examples from the target"),
    ({"baseline": "class_mapping"}, "needs --source"),
    ({"baseline": "teacher", "teacher_epochs": 0}, "teacher_epochs must be a whole number >= 1"),
    ({"baseline": "teacher", "teacher_temperatures": ()}, "temperatures"),
])
def test_label_baselines_refuse_what_cannot_work(tmp_path, changes, message):
    with pytest.raises(DistillError, match=message):  # as the config is made, or by the run
        run_experiment(tiny_config(str(tmp_path / "no_data"), **changes), str(tmp_path / "run"),
                       verbose=False)
    assert not os.path.exists(tmp_path / "run")
