"""Where a distillation run stands: the record saved with every checkpoint.

The data order and the inner batches are functions of (seed, epoch/step), so the meta
state together with this record is everything needed to continue a run exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kerasdistill.distill.resets import ResetTracker
from kerasdistill.errors import DistillError

UNIFORM_START = {"label_init": "uniform"}

# Changed when a batch draw changes: a checkpoint of another draw cannot go on as its
# run would have (kerasdistill 0.2 drew inner batches with numpy, 0.3 statelessly in the
# graph; 0.4 wraps the last outer batch of an epoch around instead of dropping the tail;
# 0.5 draws with an integer hash, the same with XLA and without: philox's draws were not).
BATCH_DRAWS = ("inner: counter hash (seed, INNER_BATCH) x global step; "
               "outer: every example each epoch, the last batch wrapped around")


@dataclasses.dataclass
class RunProgress:
    """Where a distillation run stands: saved with every checkpoint, restored on resume.

    The data order and the inner batches are functions of (seed, epoch/step), so
    together with the meta state this is everything needed to continue exactly.
    """

    tracker: ResetTracker
    epoch: int = 0                   # epochs completed
    global_step: int = 0
    num_resets: int = 0
    best: dict = dataclasses.field(default_factory=lambda: {
        "validation_error": float("inf"), "num_train_steps": 0})
    best_labels: np.ndarray | None = None
    curve: list = dataclasses.field(default_factory=list)
    meta_seconds: float = 0.0
    validation_seconds: float = 0.0
    starting_labels: dict = dataclasses.field(default_factory=lambda: dict(UNIFORM_START))
    # (global step, seconds) at the end of every compiled call of this process, for
    # the benchmark; not saved in checkpoints.
    call_times: list = dataclasses.field(default_factory=list)

    def record(self, identity: dict) -> dict:
        """JSON-ready, for the checkpoint (best labels travel as a tensor)."""
        return {"identity": identity, "batch_draws": BATCH_DRAWS,
                "epoch": self.epoch, "global_step": self.global_step,
                "num_resets": self.num_resets, "tracker": self.tracker.state_dict(),
                "best": self.best, "curve": self.curve, "meta_seconds": self.meta_seconds,
                "validation_seconds": self.validation_seconds,
                "starting_labels": self.starting_labels}

    @classmethod
    def from_record(cls, record: dict, best_labels) -> "RunProgress":
        return cls(tracker=ResetTracker.from_state_dict(record["tracker"]),
                   epoch=record["epoch"], global_step=record["global_step"],
                   num_resets=record["num_resets"], best=record["best"],
                   best_labels=best_labels, curve=record["curve"],
                   meta_seconds=record["meta_seconds"],
                   validation_seconds=record["validation_seconds"],
                   starting_labels=record.get("starting_labels", dict(UNIFORM_START)))


def check_continuable(record: dict, directory: str, epochs: int):
    """Raises DistillError unless the run `record` describes can go on to `epochs`: a
    checkpoint of another batch draw cannot (a finished one may still be read back)."""
    if record["epoch"] < epochs and record.get("batch_draws") != BATCH_DRAWS:
        raise DistillError(
            f"the checkpoint in {directory} was written by an older kerasdistill, "
            f"which drew its batches differently; continuing it would give a run that "
            f"is neither the old nor the new one. Finish it with the version that started "
            f"it, or start afresh in another --model_dir")
    if record["epoch"] > epochs:
        raise DistillError(f"the checkpoint in {directory} is at epoch {record['epoch']}, "
                           f"beyond epochs={epochs}")
