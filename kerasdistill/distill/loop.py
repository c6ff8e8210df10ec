"""The outer loop: meta-train labels, reset the learner, validate, checkpoint.

One loop serves every algorithm; what differs lives in the `InnerSolver`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from kerasdistill.data.pipeline import steps_per_epoch, target_stream
from kerasdistill.data.splits import TargetSplits
from kerasdistill.distill.meta_step import (MetaState, init_meta_state, make_meta_step,
                                            uniform_labels)
from kerasdistill.distill.resets import ResetTracker, default_reset_window
from kerasdistill.distill.solver import InnerSolver
from kerasdistill.errors import DistillError
from kerasdistill.evaluation.training import EvaluationTrainer
from kerasdistill.seeding import INNER_BATCH, LEARNER, VALIDATION, derive_seed, rng_for


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation run (SPEC 2 and 3); defaults are the paper's."""

    num_base_examples: int
    inner_batch_size: int
    epochs: int = 400
    outer_batch_size: int = 1024
    seed: int = 1234
    label_learning_rate: float = 1e-3
    validation_every_epochs: int = 5
    reset_window: int | None = None  # None: SPEC 2c's rule
    jit_compile: bool = False

    def __post_init__(self):
        for name in ("num_base_examples", "inner_batch_size", "epochs", "outer_batch_size",
                     "validation_every_epochs"):
            if getattr(self, name) <= 0:
                raise DistillError(f"{name} must be positive, got {getattr(self, name)}")
        if self.inner_batch_size > self.num_base_examples:
            raise DistillError(
                f"inner_batch_size={self.inner_batch_size} is larger than "
                f"num_base_examples={self.num_base_examples}: the inner minibatch is drawn "
                f"from the base examples without replacement")
        if self.label_learning_rate <= 0:
            raise DistillError(f"label_learning_rate must be positive, got {self.label_learning_rate}")
        if self.reset_window is not None and self.reset_window <= 0:
            raise DistillError(f"reset_window must be positive, got {self.reset_window}")


@dataclasses.dataclass
class DistillResult:
    """The best labels found and how the run got there."""

    soft_labels: np.ndarray          # best labels on validation, n x C
    num_train_steps: int             # step count that goes with them
    validation_error: float
    final_soft_labels: np.ndarray
    validation_curve: list
    reset_points: list
    meta_steps: int
    meta_train_seconds: float
    validation_seconds: float
    resumed_from_epoch: int = 0


class _Checkpoint:
    """Run state saved at validation points, written atomically.

    Holds everything the loop needs to continue exactly: meta state (labels,
    label optimizer, learner), reset bookkeeping, best labels so far, the curve.
    The data order and inner batches are functions of (seed, step), so they need
    no saving.
    """

    def __init__(self, directory: str, config: DistillConfig, solver_name: str):
        self.directory = directory
        self.identity = {"config": dataclasses.asdict(config), "solver": solver_name}

    @property
    def _arrays_path(self):
        return os.path.join(self.directory, "checkpoint.npz")

    @property
    def _progress_path(self):
        return os.path.join(self.directory, "checkpoint.json")

    def exists(self) -> bool:
        return os.path.exists(self._progress_path) and os.path.exists(self._arrays_path)

    def save(self, state: MetaState, best_labels, progress: dict):
        os.makedirs(self.directory, exist_ok=True)
        arrays = {f"state_{i}": np.asarray(t) for i, t in enumerate(tf.nest.flatten(state))}
        if best_labels is not None:
            arrays["best_labels"] = np.asarray(best_labels)
        tmp = self._arrays_path + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self._arrays_path)
        tmp = self._progress_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({**self.identity, **progress}, f)
        os.replace(tmp, self._progress_path)

    def load(self, template: MetaState):
        with open(self._progress_path) as f:
            progress = json.load(f)
        saved = {key: progress.pop(key) for key in self.identity}
        if saved != self.identity:
            raise DistillError(
                f"the checkpoint in {self.directory} was written by a run with other settings "
                f"({saved}); use another --model_dir or delete the checkpoint to start afresh")
        with np.load(self._arrays_path) as npz:
            flat = [tf.constant(npz[f"state_{i}"]) for i in range(len(tf.nest.flatten(template)))]
            best_labels = npz["best_labels"] if "best_labels" in npz.files else None
        return tf.nest.pack_sequence_as(template, flat), best_labels, progress


def distill_labels(solver: InnerSolver, config: DistillConfig, base_images: np.ndarray,
                   target: TargetSplits, checkpoint_dir: str | None = None,
                   tensorboard_dir: str | None = None, verbose: bool = True) -> DistillResult:
    """Learns soft labels for `base_images` so that models trained on them do well on `target`.

    Args:
      solver: the inner solver (second-order or ridge regression).
      config: run settings.
      base_images: n normalised images (NHWC), n = config.num_base_examples.
      target: the target dataset's splits; training split streams outer batches,
        the validation split chooses the best labels (the test split is not used).
      checkpoint_dir: where to save and, if a checkpoint is there, resume from.
      tensorboard_dir: where to write TensorBoard summaries (None: none).
      verbose: show a progress bar.
    """
    num_base, num_classes = len(base_images), target.spec.num_classes
    if num_base != config.num_base_examples:
        raise DistillError(f"got {num_base} base images, config says {config.num_base_examples}")
    window = config.reset_window or default_reset_window(num_base, num_classes)
    meta_step = make_meta_step(solver, config.label_learning_rate, config.jit_compile)
    trainer = EvaluationTrainer(solver, base_images, config.inner_batch_size)
    base_tensor = tf.constant(base_images)
    train_images = tf.constant(target.train_images)
    train_labels = tf.constant(target.train_labels.astype(np.int32))
    batches_per_epoch = steps_per_epoch(len(target.train_images), config.outer_batch_size)

    state = init_meta_state(solver, uniform_labels(num_base, num_classes),
                            derive_seed(config.seed, LEARNER, 0))
    tracker = ResetTracker(window)
    best_labels, best = None, {"validation_error": float("inf"), "num_train_steps": 0}
    curve, start_epoch, global_step, num_resets = [], 0, 0, 0
    meta_seconds = validation_seconds = 0.0
    checkpoint = _Checkpoint(checkpoint_dir, config, solver.name) if checkpoint_dir else None
    if checkpoint and checkpoint.exists():
        state, best_labels, progress = checkpoint.load(state)
        tracker = ResetTracker.from_state_dict(progress["tracker"])
        best, curve = progress["best"], progress["curve"]
        start_epoch, global_step = progress["epoch"], progress["global_step"]
        num_resets = progress["num_resets"]
        meta_seconds, validation_seconds = progress["meta_seconds"], progress["validation_seconds"]
        if verbose:
            print(f"Resuming from {checkpoint_dir} at epoch {start_epoch}", file=sys.stderr)
    writer = tf.summary.create_file_writer(tensorboard_dir) if tensorboard_dir else None
    progbar = keras.utils.Progbar(
        config.epochs * batches_per_epoch, verbose=1 if verbose else 0,
        interval=5 if sys.stdout.isatty() else 60,
        stateful_metrics=["epoch", "outer_error_ma", "resets", "train_steps", "best_val_error"])

    outer_batches = iter(target_stream(train_images, train_labels, config.outer_batch_size,
                                       config.seed, start_epoch, config.epochs))
    for epoch in range(start_epoch, config.epochs):
        epoch_start, epoch_errors = time.perf_counter(), []
        for outer_images, outer_labels in itertools.islice(outer_batches, batches_per_epoch):
            inner_indices = rng_for(config.seed, INNER_BATCH, global_step).permutation(
                num_base)[:config.inner_batch_size].astype(np.int32)
            state, metrics = meta_step(state, base_tensor, inner_indices, outer_images,
                                       outer_labels)
            outer_error = float(metrics.outer_error)
            epoch_errors.append(outer_error)
            global_step += 1
            if tracker.update(outer_error):
                num_resets += 1
                state = state._replace(
                    learner=solver.init_learner(derive_seed(config.seed, LEARNER, num_resets)))
            progbar.update(global_step, [
                ("epoch", epoch + 1), ("outer_error_ma", float(np.mean(tracker.recent or [0]))),
                ("resets", num_resets), ("train_steps", tracker.num_train_steps()),
                ("best_val_error", best["validation_error"])])
        meta_seconds += time.perf_counter() - epoch_start
        if writer:
            with writer.as_default(step=epoch + 1):
                tf.summary.scalar("outer_error", float(np.mean(epoch_errors)))
                tf.summary.scalar("resets", num_resets)
                _label_summaries(state.soft_labels.numpy())

        last_epoch = epoch + 1 == config.epochs
        if (epoch + 1) % config.validation_every_epochs and not last_epoch:
            continue
        validation_start = time.perf_counter()
        num_steps = tracker.num_train_steps()
        error = trainer.fresh_model_error(
            state.soft_labels, num_steps, derive_seed(config.seed, VALIDATION, epoch),
            target.validation_images, target.validation_labels)
        validation_seconds += time.perf_counter() - validation_start
        curve.append({"epoch": epoch + 1, "meta_step": global_step,
                      "num_train_steps": num_steps, "validation_error": error})
        if error <= best["validation_error"]:  # ties favour later labels, as the reference does
            best = {"validation_error": error, "num_train_steps": num_steps, "epoch": epoch + 1}
            best_labels = state.soft_labels.numpy()
        if writer:
            with writer.as_default(step=epoch + 1):
                tf.summary.scalar("validation_error", error)
                tf.summary.scalar("num_train_steps", num_steps)
        if checkpoint:
            checkpoint.save(state, best_labels, {
                "epoch": epoch + 1, "global_step": global_step, "num_resets": num_resets,
                "tracker": tracker.state_dict(), "best": best, "curve": curve,
                "meta_seconds": meta_seconds, "validation_seconds": validation_seconds})
    if writer:
        writer.flush()
    return DistillResult(
        soft_labels=best_labels, num_train_steps=int(best["num_train_steps"]),
        validation_error=float(best["validation_error"]),
        final_soft_labels=state.soft_labels.numpy(), validation_curve=curve,
        reset_points=list(tracker.reset_points), meta_steps=global_step,
        meta_train_seconds=meta_seconds, validation_seconds=validation_seconds,
        resumed_from_epoch=start_epoch)


def _label_summaries(soft_labels: np.ndarray):
    """How far the labels have moved from uniform: mean entropy and top mass."""
    entropy = -np.sum(soft_labels * np.log(np.clip(soft_labels, 1e-12, 1.0)), axis=1)
    tf.summary.scalar("labels/mean_entropy", float(entropy.mean()))
    tf.summary.scalar("labels/mean_top_mass", float(soft_labels.max(axis=1).mean()))
