"""Model resets and the learned step count (docs/method.md section 2c)."""

from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple

import numpy as np
import tensorflow as tf


def default_reset_window(num_base_examples: int, num_classes: int) -> int:
    """G = 50 normally, 200 when n > 100, 100 for targets with many classes.

    "Many classes" follows the reference code: CIFAR-100 and Kuzushiji-49, i.e.
    more than 26 classes.
    """
    if num_classes > 26:
        return 100
    if num_base_examples > 100:
        return 200
    return 50


@dataclasses.dataclass
class ResetTracker:
    """Watches the learner's outer-batch error and says when to reset it.

    The loop runs the rule in the graph (`ResetState`, `reset_rule_step`); this
    class is its host-side record: the reset points, the number of training steps
    they give, the state saved in checkpoints, and (`update`) the rule in plain
    Python, which the tests hold the graph version to.

    Keeps a moving average over the last `window` errors. Once the window is
    full, a new lowest average restarts the patience count; after `window`
    further steps without a new lowest, the learner is reset and the step count
    of the lowest average is recorded. This follows the reference
    implementation's bookkeeping exactly, so learned step counts are comparable.
    """

    window: int
    reset_points: list = dataclasses.field(default_factory=list)
    steps_since_reset: int = 0
    steps_since_lowest: int = 0
    lowest_sum: float = float("inf")
    recent: collections.deque = dataclasses.field(default_factory=collections.deque)

    def __post_init__(self):
        if self.window <= 0:
            raise ValueError(f"reset window must be positive, got {self.window}")

    def update(self, outer_error: float) -> bool:
        """Records one step's outer error; returns True when the learner must reset."""
        self.steps_since_reset += 1
        self.recent.append(outer_error)
        if len(self.recent) <= self.window:
            if len(self.recent) == self.window:
                self.lowest_sum = sum(self.recent)
                self.steps_since_lowest = 0
            return False
        self.recent.popleft()
        window_sum = sum(self.recent)
        if window_sum < self.lowest_sum:
            self.lowest_sum = window_sum
            self.steps_since_lowest = 0
            return False
        if self.steps_since_lowest < self.window:
            self.steps_since_lowest += 1
            return False
        self.reset_points.append(self.steps_since_reset - self.steps_since_lowest - 1)
        self.recent.clear()
        self.lowest_sum = float("inf")
        self.steps_since_reset = 0
        self.steps_since_lowest = 0
        return True

    def num_train_steps(self) -> int:
        """Steps for evaluation models: mean of the last 3 reset points, or the
        current count when no reset has happened yet (at least 1)."""
        if not self.reset_points:
            return max(self.steps_since_reset, 1)
        last = self.reset_points[-3:]
        return max(int(sum(last) / len(last)), 1)

    def state_dict(self) -> dict:
        return {"window": self.window, "reset_points": list(self.reset_points),
                "steps_since_reset": self.steps_since_reset,
                "steps_since_lowest": self.steps_since_lowest,
                "lowest_sum": self.lowest_sum, "recent": list(self.recent)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ResetTracker":
        tracker = cls(window=state["window"])
        tracker.reset_points = list(state["reset_points"])
        tracker.steps_since_reset = state["steps_since_reset"]
        tracker.steps_since_lowest = state["steps_since_lowest"]
        tracker.lowest_sum = state["lowest_sum"]
        tracker.recent = collections.deque(state["recent"])
        return tracker


class ResetState(NamedTuple):
    """The reset rule's state as tensors, for the in-graph outer loop.

    `recent` holds the last `count` outer errors right-aligned in a buffer of
    `window` entries, with zeros before them, so its sum is the window's sum.
    Errors and sums are float64, as the Python rule's, so both see the same sums.
    """

    recent: tf.Tensor              # [window] float64
    count: tf.Tensor               # int32, entries in use
    lowest_sum: tf.Tensor          # float64
    steps_since_reset: tf.Tensor   # int32
    steps_since_lowest: tf.Tensor  # int32


def reset_state_of(tracker: ResetTracker) -> ResetState:
    recent = np.zeros(tracker.window, np.float64)
    if tracker.recent:
        recent[-len(tracker.recent):] = list(tracker.recent)
    return ResetState(tf.constant(recent), tf.constant(len(tracker.recent), tf.int32),
                      tf.constant(tracker.lowest_sum, tf.float64),
                      tf.constant(tracker.steps_since_reset, tf.int32),
                      tf.constant(tracker.steps_since_lowest, tf.int32))


def absorb_reset_state(tracker: ResetTracker, state: ResetState, new_reset_points):
    """Brings the host record up to date after the graph ran some steps."""
    count = int(state.count)
    tracker.recent = collections.deque(
        float(e) for e in (state.recent.numpy()[-count:] if count else []))
    tracker.lowest_sum = float(state.lowest_sum)
    tracker.steps_since_reset = int(state.steps_since_reset)
    tracker.steps_since_lowest = int(state.steps_since_lowest)
    tracker.reset_points.extend(int(point) for point in new_reset_points)


def reset_rule_step(state: ResetState, outer_error: tf.Tensor, window: int):
    """`ResetTracker.update` in the graph: returns (new_state, reset?, reset point).

    The reset point (the step count of the lowest moving average) is meaningful
    only when reset? is true.
    """
    error = tf.cast(outer_error, tf.float64)
    steps_since_reset = state.steps_since_reset + 1
    recent = tf.concat([state.recent[1:], error[None]], axis=0)
    filling = state.count < window          # the window is not full yet
    count = tf.minimum(state.count + 1, window)
    window_sum = tf.reduce_sum(recent)
    just_full = tf.logical_and(filling, count == window)
    new_lowest = tf.logical_and(tf.logical_not(filling), window_sum < state.lowest_sum)
    patient = state.steps_since_lowest < window
    reset = tf.logical_not(filling | new_lowest | patient)
    reset_point = steps_since_reset - state.steps_since_lowest - 1
    lowest_sum = tf.where(just_full | new_lowest, window_sum, state.lowest_sum)
    steps_since_lowest = tf.where(
        just_full | new_lowest, 0,
        tf.where(filling, state.steps_since_lowest, state.steps_since_lowest + 1))
    kept = ResetState(recent, count, lowest_sum, steps_since_reset, steps_since_lowest)
    cleared = ResetState(tf.zeros_like(recent), tf.constant(0, tf.int32),
                         tf.constant(np.inf, tf.float64), tf.constant(0, tf.int32),
                         tf.constant(0, tf.int32))
    new_state = tf.nest.map_structure(lambda c, k: tf.where(reset, c, k), cleared, kept)
    return ResetState(*new_state), reset, reset_point


def max_resets_within(num_steps: int, window: int) -> int:
    """At most this many resets happen in `num_steps` consecutive steps: after a
    reset the window refills (window steps) and patience runs out (window + 1 more),
    and the first of the steps may itself reset."""
    return 1 + (num_steps - 1) // (2 * window + 1)
