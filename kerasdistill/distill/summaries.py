"""TensorBoard summaries of a distillation run: per epoch, per validation point, and how
far the labels have moved from uniform."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def epoch_summaries(writer, first_epoch: int, batches_per_epoch: int, errors: np.ndarray,
                    reset_at: np.ndarray, num_resets: int, epoch: int,
                    soft_labels: np.ndarray):
    """Scalars per epoch of a stretch of meta steps just run (`errors`, `reset_at`: one
    per step; `num_resets`: the run's count after it); the labels' summaries at its end
    (the labels are read back only then)."""
    resets_before = num_resets - int(reset_at.sum())
    with writer.as_default():
        for offset in range(len(errors) // batches_per_epoch):
            part = slice(offset * batches_per_epoch, (offset + 1) * batches_per_epoch)
            step = first_epoch + offset + 1
            tf.summary.scalar("outer_error", float(errors[part].mean()), step=step)
            tf.summary.scalar("resets", resets_before + int(reset_at[:part.stop].sum()),
                              step=step)
        with writer.as_default(step=epoch):
            label_summaries(soft_labels)


def validation_summaries(writer, epoch: int, validation_error: float, num_train_steps: int):
    with writer.as_default(step=epoch):
        tf.summary.scalar("validation_error", validation_error)
        tf.summary.scalar("num_train_steps", num_train_steps)


def label_summaries(soft_labels: np.ndarray):
    """How far the labels have moved from uniform: mean entropy and top mass."""
    entropy = -np.sum(soft_labels * np.log(np.clip(soft_labels, 1e-12, 1.0)), axis=1)
    tf.summary.scalar("labels/mean_entropy", float(entropy.mean()))
    tf.summary.scalar("labels/mean_top_mass", float(soft_labels.max(axis=1).mean()))
