"""The reset rule of docs/method.md section 2c on made-up error sequences."""

import pytest

from kerasdistill.distill.resets import ResetTracker, default_reset_window


def _feed(tracker, errors):
    return [step for step, error in enumerate(errors, 1) if tracker.update(error)]


def test_no_reset_while_error_keeps_falling():
    tracker = ResetTracker(window=5)
    assert _feed(tracker, [1.0 - 0.01 * i for i in range(60)]) == []
    assert tracker.num_train_steps() == 60  # no reset yet: the current count


def test_reset_after_window_steps_without_improvement():
    window = 5
    # Falls for 20 steps (lowest 5-step average ends at step 20), then flat and higher.
    errors = [1.0 - 0.04 * i for i in range(20)] + [0.9] * 40
    tracker = ResetTracker(window=window)
    resets = _feed(tracker, errors)
    # After step 20 the average rises; patience counts window steps (21..25), and
    # the step after that (26) triggers the reset.
    assert resets[0] == 26
    # Recorded: the step count at which the moving average was lowest.
    assert tracker.reset_points[0] == 20
    # A flat error after the reset: the first full window is the lowest (step 5),
    # and each episode lasts 5 + 5 + 1 steps.
    assert resets == [26, 37, 48, 59]
    assert tracker.reset_points == [20, 5, 5, 5]
    assert tracker.num_train_steps() == 5


def test_train_steps_is_mean_of_last_three_reset_points():
    tracker = ResetTracker(window=2)
    tracker.reset_points = [10, 30, 50, 70]
    assert tracker.num_train_steps() == 50
    tracker.reset_points = [7, 8]
    assert tracker.num_train_steps() == 7  # int(7.5), as the reference truncates


def test_state_round_trip_continues_identically():
    errors = [1.0 - 0.04 * i for i in range(20)] + [0.9] * 40 + [0.5 - 0.01 * i for i in range(30)]
    whole = ResetTracker(window=5)
    expected = _feed(whole, errors)
    first = ResetTracker(window=5)
    _feed(first, errors[:33])
    second = ResetTracker.from_state_dict(first.state_dict())
    later = [33 + s for s in _feed(second, errors[33:])]
    assert _feed(ResetTracker(window=5), errors[:33]) + later == expected
    assert second.reset_points == whole.reset_points


@pytest.mark.parametrize("n,classes,window", [(10, 10, 50), (100, 10, 50), (200, 10, 200),
                                              (500, 10, 200), (100, 100, 100), (200, 49, 100)])
def test_default_window(n, classes, window):
    assert default_reset_window(n, classes) == window


def test_window_must_be_positive():
    with pytest.raises(ValueError):
        ResetTracker(window=0)
