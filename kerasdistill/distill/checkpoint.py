"""The run's checkpoint: meta state, best labels and progress as one atomic unit.

Built on `tf.train.Checkpoint` and `tf.train.CheckpointManager`: each save writes
a new `ckpt-<epoch>` (TensorFlow writes it under a temporary name and renames it)
and only then moves the `checkpoint` index file to it (also a temporary file and
a rename). A SIGKILL at any instant therefore leaves the previous complete
checkpoint or the new one. The progress record (reset bookkeeping, curve, best
validation point, the run identity) is a string variable inside the same
checkpoint, so it can never disagree with the tensors beside it. The last
`max_to_keep` checkpoints are kept; an unreadable newest one falls back to the
one before it, with a warning naming the file.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re

import tensorflow as tf

from kerasdistill.errors import DistillError

_PREFIX = "ckpt"
_PROGRESS_KEY = "progress/.ATTRIBUTES/VARIABLE_VALUE"
# Files of the checkpoint format before tf.train.Checkpoint (kerasdistill 0.1).
_LEGACY_FILES = ("checkpoint.npz", "checkpoint.json")


def _numbered_prefixes(directory: str) -> list[str]:
    """Checkpoint prefixes in `directory`, newest first, read from the files
    themselves, so a damaged `checkpoint` index file cannot hide them."""
    found = []
    for index_file in glob.glob(os.path.join(glob.escape(directory), f"{_PREFIX}-*.index")):
        match = re.fullmatch(rf"{_PREFIX}-(\d+)\.index", os.path.basename(index_file))
        if match:
            found.append((int(match.group(1)), index_file[:-len(".index")]))
    return [prefix for _, prefix in sorted(found, reverse=True)]


def refuse_legacy_checkpoint(directory: str):
    legacy = [name for name in _LEGACY_FILES if os.path.exists(os.path.join(directory, name))]
    if legacy:
        raise DistillError(
            f"{directory} holds a checkpoint in the format of kerasdistill 0.1 ({', '.join(legacy)}),"
            f" which this version does not resume; use another --model_dir (a finished run's "
            f"distilled set can still be written with `python -m experiments.export`)")


def peek_progress(directory: str) -> dict | None:
    """The progress record of the newest readable checkpoint, without restoring it;
    None when there is no checkpoint. Reads only (for checks before any write)."""
    if not os.path.isdir(directory):
        return None
    refuse_legacy_checkpoint(directory)
    errors = []
    for prefix in _numbered_prefixes(directory):
        try:
            raw = tf.train.load_checkpoint(prefix).get_tensor(_PROGRESS_KEY)
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except Exception as error:  # noqa: BLE001 - a damaged file raises OpError, IndexError, ...
            errors.append(f"{prefix}: {type(error).__name__}")
    if errors:
        raise DistillError(f"no readable checkpoint in {directory} ({'; '.join(errors)}); "
                           f"delete the folder to start afresh")
    return None


class RunCheckpoint:
    """Saves and restores (state, best labels, progress) in `directory`.

    Args:
      directory: the checkpoint folder (created on the first save).
      max_to_keep: how many of the newest checkpoints stay on disk.
    """

    def __init__(self, directory: str, max_to_keep: int = 3):
        self.directory = directory
        self.max_to_keep = max_to_keep
        self._variables = None
        self._manager = None

    def _track(self, state, best_labels_like):
        """Variables mirroring `state` (a nest of tensors), built once."""
        if self._variables is None:
            flat = tf.nest.flatten(state)
            self._variables = {
                "state": [tf.Variable(t, trainable=False) for t in flat],
                "best_labels": tf.Variable(tf.zeros_like(best_labels_like), trainable=False),
                "progress": tf.Variable("", dtype=tf.string, trainable=False),
            }
            self._checkpoint = tf.train.Checkpoint(**self._variables)
        return self._variables

    def exists(self) -> bool:
        return bool(os.path.isdir(self.directory) and _numbered_prefixes(self.directory))

    def save(self, state, best_labels, progress: dict, number: int):
        """Writes checkpoint `number` (the epoch); returns its path."""
        variables = self._track(state, state.soft_labels)
        for variable, value in zip(variables["state"], tf.nest.flatten(state)):
            variable.assign(value)
        if best_labels is not None:
            variables["best_labels"].assign(best_labels)
        variables["progress"].assign(json.dumps({**progress,
                                                 "has_best_labels": best_labels is not None}))
        if self._manager is None:
            os.makedirs(self.directory, exist_ok=True)
            self._manager = tf.train.CheckpointManager(
                self._checkpoint, self.directory, max_to_keep=self.max_to_keep,
                checkpoint_name=_PREFIX)
        return self._manager.save(checkpoint_number=number)

    def restore(self, template):
        """(state, best labels or None, progress) from the newest readable checkpoint,
        or None when there is none. An unreadable checkpoint is skipped with a
        warning naming it; if none can be read, DistillError names them all."""
        refuse_legacy_checkpoint(self.directory)
        variables = self._track(template, template.soft_labels)
        failures = []
        for prefix in _numbered_prefixes(self.directory):
            try:
                self._checkpoint.read(prefix).assert_existing_objects_matched()
                progress = json.loads(variables["progress"].numpy().decode())
            except Exception as error:  # noqa: BLE001 - OpError, IndexError, AssertionError, ...
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                failures.append(f"{prefix} ({message[:200]})")
                logging.warning("checkpoint %s cannot be read (%s); trying the one before it",
                                prefix, message[:200])
                continue
            if failures:
                logging.warning("resuming from the older checkpoint %s", prefix)
            state = tf.nest.pack_sequence_as(
                template, [tf.identity(v) for v in variables["state"]])
            best = tf.identity(variables["best_labels"]).numpy() \
                if progress.pop("has_best_labels") else None
            return state, best, progress
        if failures:
            raise DistillError(f"no checkpoint in {self.directory} can be read: "
                               f"{'; '.join(failures)}. Delete the folder to start afresh")
        return None
