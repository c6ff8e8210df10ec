"""The outer loop: meta-train labels, reset the learner, validate, checkpoint.

One loop serves every algorithm; what differs lives in the `InnerSolver`. Its settings
are `config.DistillConfig`; where a run stands (the checkpoint's record) is
`progress.py`; what makes a checkpoint the same run is `identity.py`; its TensorBoard
output is `summaries.py`. This module drives them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from kerasdistill.config import DistillConfig
from kerasdistill.data.augmentation import Augmentation
from kerasdistill.data.pipeline import epoch_index_batches, steps_per_epoch
from kerasdistill.data.splits import TargetSplits
from kerasdistill.distill.autotune import choose_jit_compile
from kerasdistill.distill.checkpoint import RunCheckpoint, peek_progress
from kerasdistill.distill.identity import check_checkpoint_identity, loop_identity
from kerasdistill.distill.meta_loop import StretchInputs, make_meta_loop
from kerasdistill.distill.meta_step import FINITE_CHECKS, MetaState, init_meta_state, uniform_labels
from kerasdistill.distill.progress import RunProgress, check_continuable
from kerasdistill.distill.resets import (ResetTracker, absorb_reset_state, default_reset_window,
                                         max_resets_within, reset_state_of)
from kerasdistill.distill.summaries import epoch_summaries, validation_summaries
from kerasdistill.distribute import make_strategy
from kerasdistill.errors import DistillError
from kerasdistill.seeding import (INNER_BATCH, LEARNER, START_VALIDATION, VALIDATION,
                                  VALIDATION_SEARCH, derive_seed)
from kerasdistill.training.learner import stack_nests
from kerasdistill.training.solver import InnerSolver
from kerasdistill.training.trainer import EvaluationTrainer, choose_num_steps


@dataclasses.dataclass(frozen=True)
class StartingLabels:
    """Where meta-learning starts, when not from the paper's uniform labels (issue 13).

    `num_train_steps` is the step count the labels are scored at before the first meta
    step (chosen by the caller, e.g. on validation as for a baseline): the run's
    validation then compares every later point with them, so meta-learning can never
    leave labels worse than it was given. `record` (JSON-ready) says how they were made.
    """

    labels: np.ndarray
    num_train_steps: int
    record: dict

    def check(self, num_base: int, num_classes: int):
        labels = np.asarray(self.labels)
        if labels.shape != (num_base, num_classes):
            raise DistillError(f"starting labels have shape {labels.shape}, expected "
                               f"({num_base}, {num_classes})")
        if not np.all(np.isfinite(labels)) or labels.min() < 0 or not np.allclose(
                labels.sum(axis=1), 1.0, atol=1e-4):
            raise DistillError("starting labels must be finite, non-negative, and each row "
                               "must sum to 1")
        if self.num_train_steps <= 0:
            raise DistillError(f"starting labels' num_train_steps must be positive, got "
                               f"{self.num_train_steps}")


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
    # Meta-training and validation seconds of the sessions before this one, as the
    # checkpoint recorded them: a resumed run's wall time is this plus its own.
    earlier_sessions_seconds: float = 0.0
    call_times: list = dataclasses.field(default_factory=list)  # RunProgress.call_times
    # How the starting labels were made (StartingLabels.record); {"label_init": "uniform"}
    # for the paper's start.
    starting_labels: dict = dataclasses.field(default_factory=dict)


class NonFiniteError(DistillError):
    """A meta step produced a NaN or an infinity; the run stops at that step."""


def distill_labels(solver: InnerSolver, config: DistillConfig, base_images: np.ndarray,
                   target: TargetSplits, checkpoint_dir: str | None = None,
                   tensorboard_dir: str | None = None, verbose: bool = True,
                   identity: dict | None = None,
                   starting_labels: Callable[[], StartingLabels] | None = None,
                   validation_checkpoints: list[int] | None = None) -> DistillResult:
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
      identity: what the checkpoint must match to be resumed (default: the
        distillation settings and the solver; experiments pass the run identity).
      starting_labels: None to start from uniform labels (docs/method.md section 2), or a function
        giving the StartingLabels; it is called on a fresh start only (a resumed run
        has its labels in the checkpoint), and its labels are validated first.
      validation_checkpoints: None to validate each point's labels at the learner's
        step count (docs/method.md section 3, the paper's: steps since the last reset); or step
        counts to search, as the baselines do: one model picks the count, a fresh one scores it.

    Raises:
      NonFiniteError: a step gave a non-finite outer loss, hypergradient or labels.
      DistillError: a checkpoint of another run, or none readable.
    """
    num_base = len(base_images)
    if num_base != config.num_base_examples:
        raise DistillError(f"got {num_base} base images, config says {config.num_base_examples}")
    if validation_checkpoints is not None and (
            not validation_checkpoints or min(validation_checkpoints) <= 0 or
            list(validation_checkpoints) != sorted(set(validation_checkpoints))):
        raise DistillError(f"validation_checkpoints must be positive, increasing step counts, "
                           f"got {validation_checkpoints}")
    if solver.needs_searched_validation and validation_checkpoints is None:
        raise DistillError(f"the {type(solver).__name__} solver needs validation_checkpoints "
                           f"(searched step counts): {solver.needs_searched_validation}")
    run = _LabelDistillation(solver, config, base_images, target, verbose,
                             checkpointing=bool(checkpoint_dir),
                             validation_checkpoints=validation_checkpoints)
    identity = identity if identity is not None else loop_identity(
        config, solver, given_start=starting_labels is not None,
        validation_checkpoints=validation_checkpoints)
    checkpoint = RunCheckpoint(checkpoint_dir) if checkpoint_dir else None
    state, progress = run.restore(checkpoint, identity)
    if run.resumed_from == 0 and starting_labels is not None:
        state = run.start_from(state, progress, starting_labels())
    earlier_sessions_seconds = progress.meta_seconds + progress.validation_seconds
    writer = tf.summary.create_file_writer(tensorboard_dir) if tensorboard_dir else None
    progbar = run.progress_bar()
    while progress.epoch < config.epochs:
        next_validation = min(config.epochs, config.validation_every_epochs * (
            progress.epoch // config.validation_every_epochs + 1))
        state = run.train_until(state, progress, next_validation, progbar, writer)
        run.validate(state, progress, writer)
        if checkpoint:
            checkpoint.save(state, progress.best_labels, progress.record(identity),
                            number=progress.epoch)
    if writer:
        writer.flush()
    return DistillResult(
        soft_labels=progress.best_labels, num_train_steps=int(progress.best["num_train_steps"]),
        validation_error=float(progress.best["validation_error"]),
        final_soft_labels=state.soft_labels.numpy(), validation_curve=progress.curve,
        reset_points=list(progress.tracker.reset_points), meta_steps=progress.global_step,
        meta_train_seconds=progress.meta_seconds,
        validation_seconds=progress.validation_seconds, resumed_from_epoch=run.resumed_from,
        earlier_sessions_seconds=earlier_sessions_seconds, call_times=progress.call_times,
        starting_labels=progress.starting_labels)


class _LabelDistillation:
    """The parts of one distillation run that do not change while it runs (solver,
    compiled stretch of meta steps, data as tensors), with one method per phase of
    the loop: restore, train up to a validation point, validate. What changes lives
    in MetaState and RunProgress, which the methods take and return."""

    def __init__(self, solver: InnerSolver, config: DistillConfig, base_images, target,
                 verbose: bool, checkpointing: bool, validation_checkpoints=None):
        self.solver, self.config, self.target, self.verbose = solver, config, target, verbose
        self.checkpointing = checkpointing
        self.validation_checkpoints = validation_checkpoints
        self.num_base, self.num_classes = len(base_images), target.spec.num_classes
        self.window = config.reset_window or default_reset_window(self.num_base,
                                                                  self.num_classes)
        strategy = make_strategy(config.distribute)
        replicas = strategy.num_replicas_in_sync if strategy else 1
        outer_batch = min(config.outer_batch_size, len(target.train_images))
        if outer_batch % replicas:
            raise DistillError(f"the outer batch ({outer_batch}) must divide evenly over the "
                               f"{replicas} replicas of --distribute={config.distribute}")
        self.base_tensor = tf.constant(base_images)
        self.train_images = tf.constant(target.train_images)
        self.train_labels = tf.constant(target.train_labels.astype(np.int32))
        jit_compile, _ = choose_jit_compile(
            config.jit_compile, solver, self.base_tensor, self.train_images[:outer_batch],
            self.train_labels[:outer_batch], config.inner_batch_size, self.num_classes,
            distributed=strategy is not None)
        self.meta_loop = make_meta_loop(solver, config.inner_batch_size, self.window,
                                        config.label_learning_rate, jit_compile, strategy,
                                        config.label_parameterization, Augmentation(config.augment))
        self.inner_seed = tf.constant(derive_seed(config.seed, INNER_BATCH), tf.int32)
        self.fresh_learners = _FreshLearners(solver, config.seed)
        self.trainer = EvaluationTrainer(solver, base_images, config.inner_batch_size,
                                         augmentation=Augmentation(config.augment))
        self.batches_per_epoch = steps_per_epoch(len(target.train_images),
                                                 config.outer_batch_size)
        self.resumed_from = 0

    def restore(self, checkpoint: RunCheckpoint | None, identity: dict):
        """A fresh start, or the newest readable checkpoint if there is one."""
        state = init_meta_state(self.solver, uniform_labels(self.num_base, self.num_classes),
                                derive_seed(self.config.seed, LEARNER, 0))
        progress = RunProgress(tracker=ResetTracker(self.window))
        if not (checkpoint and checkpoint.exists()):
            return state, progress
        # Checked before the tensors are read too: another run's state may have other
        # shapes (a learner pool, another model), which would fail to restore with a
        # message about tensors instead of this one.
        check_checkpoint_identity(checkpoint.directory, peek_progress(checkpoint.directory),
                                  identity)
        restored = checkpoint.restore(state)
        if restored is None:
            return state, progress
        state, best_labels, record = restored
        check_checkpoint_identity(checkpoint.directory, record, identity)
        check_continuable(record, checkpoint.directory, self.config.epochs)
        progress = RunProgress.from_record(record, best_labels)
        self.resumed_from = progress.epoch
        if self.verbose:
            print(f"Resuming from {checkpoint.directory} at epoch {progress.epoch}",
                  file=sys.stderr)
        return state, progress

    def start_from(self, state: MetaState, progress: RunProgress,
                   start: StartingLabels) -> MetaState:
        """The fresh state with `start`'s labels, which are validated at their step
        count before any meta step (curve entry of epoch 0) and are the best so far."""
        start.check(self.num_base, self.num_classes)
        labels = tf.constant(np.asarray(start.labels, np.float32), state.soft_labels.dtype)
        state = init_meta_state(self.solver, labels, derive_seed(self.config.seed, LEARNER, 0))
        begin = time.perf_counter()
        error = self._validation_error(labels, start.num_train_steps, START_VALIDATION)
        progress.validation_seconds += time.perf_counter() - begin
        progress.curve.append({"epoch": 0, "meta_step": 0, "num_train_steps":
                               int(start.num_train_steps), "validation_error": error,
                               "starting_labels": True})
        progress.best = {"validation_error": error, "num_train_steps": int(start.num_train_steps),
                         "epoch": 0}
        progress.best_labels = labels.numpy()
        progress.starting_labels = dict(start.record)
        if self.verbose:
            print(f"Starting labels ({start.record.get('label_init', 'given')}): validation "
                  f"error {100 * error:.2f} % at {start.num_train_steps} steps",
                  file=sys.stderr)
        return state

    def progress_bar(self) -> keras.utils.Progbar:
        return keras.utils.Progbar(
            self.config.epochs * self.batches_per_epoch, verbose=1 if self.verbose else 0,
            interval=5 if sys.stdout.isatty() else 60,
            stateful_metrics=["epoch", "outer_error_ma", "resets", "train_steps",
                              "best_val_error"])

    def train_until(self, state: MetaState, progress: RunProgress, end_epoch: int, progbar,
                    writer) -> MetaState:
        """Meta steps from progress.epoch up to end_epoch, with resets, in as few
        compiled calls as `steps_per_call` allows; advances `progress` in place."""
        config = self.config
        start = time.perf_counter()
        first_epoch, first_step = progress.epoch, progress.global_step
        outer_indices = np.concatenate([
            epoch_index_batches(len(self.target.train_images), config.outer_batch_size,
                                config.seed, epoch) for epoch in range(first_epoch, end_epoch)])
        # Each call gets as many fresh learners as it could use; a bounded call keeps
        # that stack small when validation points are far apart.
        call_size = config.steps_per_call or min(len(outer_indices),
                                                 _MAX_RESETS_PER_CALL * (2 * self.window + 1))
        errors, reset_at = [], []
        for begin in range(0, len(outer_indices), call_size):
            stretch = outer_indices[begin:begin + call_size]
            max_resets = max_resets_within(call_size, self.window)
            result = self.meta_loop(state, reset_state_of(progress.tracker), StretchInputs(
                self.base_tensor, self.train_images, self.train_labels, tf.constant(stretch),
                tf.constant(progress.global_step, tf.int32), self.inner_seed,
                self.fresh_learners.stack(progress.num_resets, max_resets)))
            steps_done, used = int(result.steps_done), int(result.resets_used)
            if used > max_resets:  # max_resets_within is a proven bound: a bug, not bad input
                raise AssertionError(f"{used} resets in {len(stretch)} steps, more than the "
                                     f"{max_resets} fresh learners given")
            progress.global_step += steps_done
            progress.num_resets += used
            absorb_reset_state(progress.tracker, result.resets,
                               result.reset_points.numpy()[:used])
            errors.extend(result.outer_errors.numpy()[:steps_done])
            reset_at.extend(result.reset_at.numpy()[:steps_done])
            self._stop_if_not_finite(result.finite.numpy(), progress)
            state = result.state
            progress.call_times.append(
                (progress.global_step, progress.meta_seconds + time.perf_counter() - start))
            progbar.update(progress.global_step, [
                ("epoch", first_epoch + (progress.global_step - first_step - 1) //
                 self.batches_per_epoch + 1),
                ("outer_error_ma", float(np.mean(progress.tracker.recent or [0]))),
                ("resets", progress.num_resets),
                ("train_steps", progress.tracker.num_train_steps()),
                ("best_val_error", progress.best["validation_error"])])
        progress.meta_seconds += time.perf_counter() - start
        progress.epoch = end_epoch
        if writer:
            epoch_summaries(writer, first_epoch, self.batches_per_epoch, np.asarray(errors),
                            np.asarray(reset_at), progress.num_resets, progress.epoch,
                            state.soft_labels.numpy())
        return state

    def _stop_if_not_finite(self, finite: np.ndarray, progress: RunProgress):
        if finite.all():
            return
        broken = [name for name, ok in zip(FINITE_CHECKS, finite) if not ok]
        if not self.checkpointing:
            kept = "no checkpoints are kept by this run"
        elif progress.curve and progress.curve[-1]["epoch"] > 0:  # epoch 0: a start's score
            kept = f"the checkpoint of epoch {progress.curve[-1]['epoch']} is kept"
        else:
            kept = "no checkpoint had been written yet"
        epoch = (progress.global_step - 1) // self.batches_per_epoch + 1
        raise NonFiniteError(
            f"meta step {progress.global_step} (epoch {epoch}) gave a non-finite "
            f"{' and '.join(broken)}; the run stopped there ({kept}; no results were written). "
            f"Look for NaN or infinite values in the data, or lower the label learning rate")

    def _validation_error(self, soft_labels, num_steps: int, purpose: int, *point) -> float:
        """Mean validation error of `validation_models` fresh models trained on the
        labels (model 0 is the one model of the paper's protocol; models 1.. have seeds
        of their own), trained together where the solver stacks models."""
        seeds = [derive_seed(self.config.seed, purpose, *point)] + [
            derive_seed(self.config.seed, purpose, *point, m)
            for m in range(1, self.config.validation_models)]
        if len(seeds) == 1:  # exactly the paper's number (not 1 - (1 - error))
            return self.trainer.fresh_model_error(soft_labels, num_steps, seeds[0],
                                                  self.target.validation_images,
                                                  self.target.validation_labels)
        accuracies = self.trainer.test_accuracies(soft_labels, num_steps, seeds,
                                                  self.target.validation_images,
                                                  self.target.validation_labels)
        return float(1.0 - np.mean(accuracies))

    def validate(self, state: MetaState, progress: RunProgress, writer):
        """docs/method.md section 3: a fresh model on the current labels, judged on the validation
        split; keeps the best labels and step count in `progress`."""
        start = time.perf_counter()
        learner_steps = num_steps = progress.tracker.num_train_steps()
        if self.validation_checkpoints:
            # The labels' own best step count, as a baseline's: chosen with one model,
            # scored below with another (the search's minimum is biased low).
            num_steps, _ = choose_num_steps(
                self.trainer, state.soft_labels, self.validation_checkpoints,
                derive_seed(self.config.seed, VALIDATION_SEARCH, progress.epoch - 1),
                self.target.validation_images, self.target.validation_labels)
        error = self._validation_error(state.soft_labels, num_steps, VALIDATION,
                                       progress.epoch - 1)
        progress.validation_seconds += time.perf_counter() - start
        point = {"epoch": progress.epoch, "meta_step": progress.global_step,
                 "num_train_steps": num_steps, "validation_error": error}
        if self.validation_checkpoints:
            point["learner_steps"] = learner_steps
        progress.curve.append(point)
        if error <= progress.best["validation_error"]:  # ties favour later labels, as the reference does
            progress.best = {"validation_error": error, "num_train_steps": num_steps,
                             "epoch": progress.epoch}
            progress.best_labels = state.soft_labels.numpy()
        if writer:
            validation_summaries(writer, progress.epoch, error, num_steps)


_MAX_RESETS_PER_CALL = 8
class _FreshLearners:
    """Fresh learners for the resets to come, by reset number: reset k starts the
    learner of seed derive_seed(seed, LEARNER, k). Built on the host (a Keras model
    per seed), each once, and handed to the graph as a stack."""

    def __init__(self, solver: InnerSolver, seed: int):
        self.solver, self.seed = solver, seed
        self._built: dict = {}

    def stack(self, resets_so_far: int, count: int):
        wanted = range(resets_so_far + 1, resets_so_far + 1 + count)
        self._built = {k: v for k, v in self._built.items() if k in wanted}
        for k in wanted:
            if k not in self._built:
                self._built[k] = self.solver.init_learner(derive_seed(self.seed, LEARNER, k))
        return stack_nests([self._built[k] for k in wanted])
