"""Is the evaluation the cause? Scores each run's selected labels with this commit's
protocol evaluation (20 fresh LeNets, the run's seed's test seeds, its step count), stacked
(20 per call, the default) and one at a time, next to the figure its own code gave.

    python results/ld_regression_issue26/evaluation_check/check.py RUN_DIR... \
        --output_dir=results/ld_regression_issue26/evaluation_check
"""
import json
import os
import sys

sys.path.insert(0, os.getcwd())
import kerasdistill  # noqa: E402,F401  (oneDNN before TensorFlow)
import numpy as np  # noqa: E402

from kerasdistill.distill.loop import DistillConfig  # noqa: E402
from kerasdistill.distill.registry import build_solver  # noqa: E402
from kerasdistill.evaluation.training import EvaluationTrainer  # noqa: E402
from kerasdistill.experiment import ExperimentConfig, load_inputs  # noqa: E402
from kerasdistill.files import write_json_atomic  # noqa: E402
from kerasdistill.hardware import machine_description  # noqa: E402
from kerasdistill.models import ModelFactory  # noqa: E402
from kerasdistill.seeding import TEST, derive_seed  # noqa: E402

runs = [a for a in sys.argv[1:] if not a.startswith("--")]
output_dir = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--output_dir="))
rows = []
for run in runs:
    config_json = json.load(open(os.path.join(run, "config.json")))
    results = json.load(open(os.path.join(run, "results.json")))
    seed = config_json["distill"]["seed"]
    config = ExperimentConfig(distill=DistillConfig(num_base_examples=100, inner_batch_size=50,
                                                    epochs=400, seed=seed),
                              target="mnist", data_dir="../shared/data").resolved()
    inputs = load_inputs(config)
    assert inputs.base_indices.tolist() == results["base_indices"], run
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    solver = build_solver("second_order", factory, outer_precision="float32")
    labels = np.asarray(results["labels"], np.float32)
    seeds = [derive_seed(seed, TEST, i) for i in range(20)]
    row = {"run": os.path.relpath(run), "version": config_json.get("kerasdistill_version"),
           "seed": seed, "num_train_steps": results["num_train_steps"],
           "its_own_figure": results["test_accuracy_mean"]}
    for per_call in (20, 1):
        trainer = EvaluationTrainer(solver, inputs.base_images, 50, models_per_call=per_call)
        accuracies = trainer.test_accuracies(labels, results["num_train_steps"], seeds,
                                             inputs.target.test_images,
                                             inputs.target.test_labels)
        row[f"head_{per_call}_per_call_mean"] = float(np.mean(accuracies))
        row[f"head_{per_call}_per_call_std"] = float(np.std(accuracies))
    print(row, flush=True)
    rows.append(row)
os.makedirs(output_dir, exist_ok=True)
write_json_atomic(os.path.join(output_dir, "config.json"),
                  {"what": __doc__.split("\n")[0], "runs": [r["run"] for r in rows],
                   "kerasdistill_version": kerasdistill.__version__,
                   "machine": machine_description()})
write_json_atomic(os.path.join(output_dir, "results.json"), {"rows": rows})
