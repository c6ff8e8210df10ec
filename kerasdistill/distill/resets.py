"""Model resets and the learned step count (SPEC 2c)."""

from __future__ import annotations

import collections
import dataclasses


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
