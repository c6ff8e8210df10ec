"""The tiny distillation the device tests run in their own processes."""

import dataclasses

from kerasdistill.distill.loop import DistillConfig, distill_labels
from kerasdistill.distill.registry import build_solver
from kerasdistill.models import ModelFactory
from tests.test_meta_loop import _tiny_target

# Window 3: with 2, LD RR's runs on one device and mirrored over two part at a near-tie of
# the reset rule (float32 rounding of the all-reduced mean, fed back through the learner,
# which since 0.4 trains towards the updated labels); with 3 they agree to 5.6e-7 in 40
# steps (second-order: 3e-8), resets identical.
CONFIG = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=4, outer_batch_size=32,
                       seed=3, validation_every_epochs=2, reset_window=3)


def distill_tiny(algorithm: str, **changes):
    target = _tiny_target()
    solver = build_solver(algorithm, ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    return distill_labels(solver, dataclasses.replace(CONFIG, **changes),
                          target.train_images[:10], target, verbose=False)
