"""Issue 13, item 3: augmentation as a stated evaluation recipe (data/augmentation.py)."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.data.augmentation import Augmentation, crop_padding
from kerasdistill.distill.identity import loop_identity, run_identity
from kerasdistill.distill.loop import DistillConfig
from kerasdistill.distill.meta_step import init_meta_state, make_meta_step
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.errors import DistillError
from kerasdistill.models import ModelFactory
from kerasdistill.training.trainer import EvaluationTrainer
from tests.conftest import tiny_config

SEED = tf.constant([7, 3], tf.int32)


def _images(count=16, side=28, channels=1, seed=0):
    return np.random.default_rng(seed).normal(size=(count, side, side, channels)).astype(
        np.float32)


def test_crop_is_a_window_of_the_reflected_image_at_a_random_offset():
    images = _images()
    out = Augmentation(("crop",))(tf.constant(images), SEED).numpy()
    pad = crop_padding(28)
    assert pad == 3
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
    offsets = []
    for image, result in zip(padded, out):
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 if np.array_equal(image[dy:dy + 28, dx:dx + 28], result)]
        assert len(found) == 1
        offsets.append(found[0])
    assert len(set(offsets)) > 4  # each example on its own draw


def test_flip_mirrors_some_examples_and_leaves_the_others():
    images = _images(count=32, side=32, channels=3)
    out = Augmentation(("flip",))(tf.constant(images), SEED).numpy()
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    kept = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < 32


def test_colour_is_a_bounded_brightness_shift_and_contrast_scale():
    images = _images(count=8, side=32, channels=3)
    out = Augmentation(("colour",))(tf.constant(images), SEED).numpy()
    scales = []
    for image, result in zip(images, out):
        mean = image.mean()
        scale, intercept = np.polyfit((image - mean).ravel(), result.ravel(), 1)
        assert 0.8 - 1e-4 <= scale <= 1.2 + 1e-4
        assert -0.2 - 1e-4 <= intercept - mean <= 0.2 + 1e-4
        np.testing.assert_allclose(result, (image - mean) * scale + intercept, atol=1e-4)
        scales.append(scale)
    assert np.ptp(scales) > 0.01


def test_draws_are_stateless_and_leading_dims_are_examples():
    augmentation = Augmentation(("flip", "crop", "colour"))
    images = tf.constant(_images(count=6))
    first = augmentation(images, SEED).numpy()
    np.testing.assert_array_equal(first, augmentation(images, SEED).numpy())
    assert not np.array_equal(first, augmentation(images, tf.constant([7, 4])).numpy())
    stacked = augmentation(tf.reshape(images, [2, 3, 28, 28, 1]), SEED).numpy()
    np.testing.assert_array_equal(stacked.reshape(first.shape), first)
    compiled = tf.function(lambda x: augmentation(x, SEED), jit_compile=True)
    np.testing.assert_allclose(compiled(images).numpy(), first, atol=1e-6)
    assert Augmentation()(images, SEED) is images


def test_operations_have_one_spelling_and_bad_names_are_refused():
    assert Augmentation(("flip", "crop")).operations == ("crop", "flip")
    config = DistillConfig(num_base_examples=10, inner_batch_size=5, augment=("flip", "crop"))
    assert config.augment == ("crop", "flip") and Augmentation(config.augment)
    for bad in (("rotate",), ("crop", "crop")):
        with pytest.raises(DistillError, match="augment must be distinct names"):
            DistillConfig(num_base_examples=10, inner_batch_size=5, augment=bad)


def test_augmented_meta_step_is_the_plain_step_on_augmented_inner_images():
    factory = ModelFactory("lenet", (28, 28, 1), 10, precision="float64")
    solver = UnrolledSGDSolver(factory, inner_learning_rate=0.5)
    rng = np.random.default_rng(1)
    base = tf.constant(rng.normal(size=(8, 28, 28, 1)))
    labels = tf.constant(rng.dirichlet(np.ones(10), size=8))
    indices = tf.constant([5, 1, 6, 2], tf.int32)
    outer_images = tf.constant(rng.normal(size=(16, 28, 28, 1)))
    outer_labels = tf.constant(rng.integers(0, 10, 16), tf.int32)
    state = init_meta_state(solver, labels, seed=2)
    augmentation = Augmentation(("crop",))
    augmented, _ = make_meta_step(solver, 0.01, augmentation=augmentation)(
        state, base, indices, outer_images, outer_labels, SEED)
    moved = tf.tensor_scatter_nd_update(base, indices[:, None],
                                        augmentation(tf.gather(base, indices), SEED))
    plain, _ = make_meta_step(solver, 0.01)(state, moved, indices, outer_images, outer_labels)
    np.testing.assert_allclose(augmented.soft_labels.numpy(), plain.soft_labels.numpy(),
                               rtol=1e-12, atol=1e-15)
    unaugmented, _ = make_meta_step(solver, 0.01)(state, base, indices, outer_images,
                                                  outer_labels)
    assert np.abs(unaugmented.soft_labels.numpy() - plain.soft_labels.numpy()).max() > 1e-8
    with pytest.raises(ValueError, match="needs its augment_seed"):
        make_meta_step(solver, 0.01, augmentation=augmentation)(
            state, base, indices, outer_images, outer_labels)


def test_stacked_models_see_the_augmented_batches_they_would_alone():
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    solver = UnrolledSGDSolver(factory)
    base = _images(count=10)
    labels = np.random.default_rng(3).dirichlet(np.ones(10), size=10).astype(np.float32)
    trainer = EvaluationTrainer(solver, base, 5, augmentation=Augmentation(("crop",)))
    plain = EvaluationTrainer(solver, base, 5)
    seeds = [11, 12, 13]
    together = trainer.train_together(labels, 6, seeds)
    for m, seed in enumerate(seeds):
        alone = trainer.train(solver.init_learner(seed), labels, 6, seed)
        got = np.concatenate([np.ravel(w[m]) for w in together.weights])
        want = np.concatenate([np.ravel(w) for w in alone.weights])
        # As test_model_stack: equal up to float32 rounding in another summation order.
        assert np.mean(np.abs(got - want) > 1e-5) < 1e-3
        assert np.abs(got - want).max() < 6 * 2e-3
    unaugmented = plain.train(solver.init_learner(11), labels, 6, 11)
    assert not np.allclose(unaugmented.weights[0].numpy(),
                           trainer.train(solver.init_learner(11), labels, 6, 11).weights[0]
                           .numpy())


def test_augmented_run_is_another_run_and_its_set_carries_the_recipe(tmp_path):
    from kerasdistill.config import TrainSettings
    from kerasdistill.evaluation.train_distilled import (augmented_batches, resolve_train_settings,
                                                         train_on_distilled)
    from kerasdistill.experiment import run_experiment
    from kerasdistill.export.distilled_set import load_distilled
    from tests.conftest import write_fake_npz
    plain = dataclasses.asdict(tiny_config(None))
    augmented = dataclasses.asdict(tiny_config(None))
    augmented["distill"]["augment"] = ["crop"]
    assert "distill.augment" not in run_identity(plain)
    assert run_identity(augmented)["distill.augment"] == ["crop"]
    old = dict(plain, distill={k: v for k, v in plain["distill"].items() if k != "augment"})
    assert run_identity(old) == run_identity(plain)
    base = DistillConfig(num_base_examples=10, inner_batch_size=5)
    solver = UnrolledSGDSolver(ModelFactory("lenet", (28, 28, 1), 10))
    assert "augment" not in loop_identity(base, solver)["distill"]
    assert loop_identity(dataclasses.replace(base, augment=("crop",)), solver)[
        "distill"]["augment"] == ["crop"]

    data_dir = str(tmp_path / "data")
    os.makedirs(data_dir)
    write_fake_npz(os.path.join(data_dir, "mnist.npz"))
    config = tiny_config(data_dir, epochs=2)
    config = dataclasses.replace(config, distill=dataclasses.replace(config.distill,
                                                                     augment=("crop",)))
    run_experiment(config, str(tmp_path / "run"), verbose=False)
    with open(tmp_path / "run" / "distilled_set" / "distilled_set.json") as f:
        assert json.load(f)["recipe"]["augment"] == ["crop"]
    distilled = load_distilled(str(tmp_path / "run" / "distilled_set"))
    assert resolve_train_settings(TrainSettings(), distilled).augment == ("crop",)
    assert resolve_train_settings(TrainSettings(augment=()), distilled).augment == ()
    with pytest.raises(DistillError, match="augment must be distinct names"):
        resolve_train_settings(TrainSettings(augment=("zoom",)), distilled)
    images = _images(count=40)
    labels = np.random.default_rng(0).integers(0, 10, 40)
    results = {a: train_on_distilled(distilled, resolve_train_settings(TrainSettings(
        repetitions=1, steps=5, augment=a), distilled), images, labels)
        for a in (None, ())}
    assert results[None]["settings"]["augment"] == ("crop",)
    assert results[()]["settings"]["augment"] == ()
    # model.fit's batches: the set's, batch k transformed on the draw (seed, k).
    batches = distilled.as_dataset(5, shuffle=False, repeat=True)
    plain = [b for b, _ in batches.take(3)]
    for k, (images, soft) in enumerate(augmented_batches(batches, Augmentation(("crop",)), 4)
                                       .take(3)):
        np.testing.assert_array_equal(images.numpy(), Augmentation(("crop",))(
            plain[k], tf.constant([4, k], tf.int64)).numpy())
        assert not np.array_equal(images.numpy(), plain[k].numpy())


def test_draws_are_the_same_with_xla_and_without():
    """tf.random's stateless ops give other numbers under XLA; the meta loop may be
    compiled either way in different sessions of one run."""
    from kerasdistill.data.pipeline import counter_uniform, inner_batch_indices
    seed = tf.constant([1234, 56], tf.int32)

    def draws(seed):
        return (inner_batch_indices(100, 10, 3, seed), counter_uniform(seed, [5, 2]),
                Augmentation(("crop", "flip", "colour"))(tf.constant(_images(count=4)), seed))

    plain = draws(seed)
    compiled = tf.function(draws, jit_compile=True)(seed)
    np.testing.assert_array_equal(plain[0].numpy(), compiled[0].numpy())
    np.testing.assert_array_equal(plain[1].numpy(), compiled[1].numpy())
    np.testing.assert_allclose(plain[2].numpy(), compiled[2].numpy(), atol=1e-5)


def test_counter_uniform_looks_uniform():
    from kerasdistill.data.pipeline import counter_uniform, random_subset
    values = counter_uniform(tf.constant([3, 9]), [20000]).numpy()
    assert 0.0 <= values.min() and values.max() < 1.0
    counts, _ = np.histogram(values, bins=10, range=(0, 1))
    assert counts.min() > 1800 and counts.max() < 2200
    assert abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < 0.03
    # Every index is picked about equally often by subsets of consecutive steps.
    picks = np.concatenate([random_subset(10, 3, tf.constant([5, step])).numpy()
                            for step in range(2000)])
    assert np.bincount(picks, minlength=10).min() > 520
