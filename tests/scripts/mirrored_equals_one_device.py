"""Run by tests/test_distribute.py in its own process: the logical CPU devices must
be made before TensorFlow starts, which the test process has long done."""

import json
import sys

import numpy as np

import kerasdistill  # noqa: F401  (oneDNN setting first)
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from kerasdistill.errors import DistillError  # noqa: E402
from tests.scripts.tiny_distillation import distill_tiny  # noqa: E402

report = {"devices": [d.name for d in tf.config.list_logical_devices("CPU")]}
for algorithm in sys.argv[1:]:
    one = distill_tiny(algorithm)
    mirrored = distill_tiny(algorithm, distribute="mirrored")
    report[algorithm] = {
        "max_label_difference": float(np.abs(one.final_soft_labels -
                                             mirrored.final_soft_labels).max()),
        "best_label_difference": float(np.abs(one.soft_labels - mirrored.soft_labels).max()),
        "reset_points": [one.reset_points, mirrored.reset_points],
        "meta_steps": [one.meta_steps, mirrored.meta_steps],
        "num_train_steps": [one.num_train_steps, mirrored.num_train_steps]}
try:
    distill_tiny("second_order", outer_batch_size=31, distribute="mirrored")
    report["odd_batch_error"] = None
except DistillError as error:
    report["odd_batch_error"] = str(error)
print("REPORT " + json.dumps(report))
