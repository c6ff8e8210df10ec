"""Exports every committed run folder (config.json + results.json) with the code at
sys.argv[1] and records a SHA-256 of each array of the written set's npz."""
import hashlib, json, os, shutil, sys, tempfile, time
code, results_root, data_dir, out = sys.argv[1:5]
sys.path.insert(0, code)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from kerasdistill.export.run_export import export_run
runs = sorted(os.path.dirname(os.path.relpath(os.path.join(d, "results.json"), results_root))
              for d, _, files in os.walk(results_root) if "results.json" in files and "config.json" in files)
record = {}
work = tempfile.mkdtemp()
start = time.time()
for i, run in enumerate(runs):
    copy = os.path.join(work, "run")
    shutil.rmtree(copy, ignore_errors=True); os.makedirs(copy)
    for name in ("config.json", "results.json"):
        shutil.copy(os.path.join(results_root, run, name), copy)
    target = os.path.join(work, "set")
    shutil.rmtree(target, ignore_errors=True)
    try:
        export_run(copy, output_dir=target, data_dir=data_dir, plots_dir="")
        with np.load(os.path.join(target, "distilled_set.npz")) as arrays:
            record[run] = {key: [str(arrays[key].dtype), list(arrays[key].shape),
                                 hashlib.sha256(arrays[key].tobytes()).hexdigest()]
                           for key in sorted(arrays.files)}
    except Exception as error:
        record[run] = {"refused": f"{type(error).__name__}: {str(error)[:200]}"}
    if i % 20 == 0:
        print(i, len(runs), round(time.time() - start), flush=True)
json.dump({"runs": record, "seconds": time.time() - start}, open(out, "w"), indent=1, sort_keys=True)
print("done", len(runs), round(time.time() - start))
