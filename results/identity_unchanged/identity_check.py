import json, os, sys
code, results_root = sys.argv[1:3]
sys.path.insert(0, code)
try:
    from kerasdistill.distill.identity import run_identity
except ImportError:
    from kerasdistill.run_identity import run_identity
same = differ = missing = 0; out = {}
for d, _, files in sorted(os.walk(results_root)):
    if "results.json" in files and "config.json" in files:
        config = json.load(open(os.path.join(d, "config.json")))
        stored = json.load(open(os.path.join(d, "results.json"))).get("run_identity")
        try:
            mine = run_identity(config)
        except Exception as e:
            mine = f"error {type(e).__name__}: {e}"
        out[os.path.relpath(d, results_root)] = mine
        if stored is None: missing += 1
        elif stored == mine: same += 1
        else: differ += 1; print("DIFFER", d)
print(json.dumps({"same_as_recorded": same, "differ": differ, "no_record": missing}))
json.dump(out, open(sys.argv[3], "w"), sort_keys=True, indent=1)
