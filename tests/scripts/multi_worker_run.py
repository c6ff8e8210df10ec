"""One worker of the two-process MultiWorkerMirroredStrategy test
(tests/test_distribute.py): python multi_worker_run.py PORT0 PORT1 INDEX OUT.npy"""

import json
import os
import sys

port0, port1, index, output = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"localhost:{port0}", f"localhost:{port1}"]},
    "task": {"type": "worker", "index": index}})

import numpy as np  # noqa: E402

from kerasdistill.distribute import make_strategy  # noqa: E402

make_strategy("multi_worker")  # before TensorFlow runs anything

from tests.scripts.tiny_distillation import distill_tiny  # noqa: E402

result = distill_tiny("second_order", distribute="multi_worker")
np.save(output, result.final_soft_labels)
print("REPORT " + json.dumps({"reset_points": result.reset_points,
                              "meta_steps": result.meta_steps}))
