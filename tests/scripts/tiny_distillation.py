"""The tiny distillation the device tests run in their own processes."""

import dataclasses

from kerasdistill.distill.loop import DistillConfig, distill_labels
from kerasdistill.distill.registry import build_solver
from kerasdistill.models import ModelFactory
from tests.test_meta_loop import _tiny_target

CONFIG = DistillConfig(num_base_examples=10, inner_batch_size=5, epochs=4, outer_batch_size=32,
                       seed=3, validation_every_epochs=2, reset_window=2)


def distill_tiny(algorithm: str, **changes):
    target = _tiny_target()
    solver = build_solver(algorithm, ModelFactory("lenet", (28, 28, 1), 10),
                          outer_precision="float32")
    return distill_labels(solver, dataclasses.replace(CONFIG, **changes),
                          target.train_images[:10], target, verbose=False)
