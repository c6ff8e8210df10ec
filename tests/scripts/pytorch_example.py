"""Runs docs/distilled-sets.md's PyTorch example as written, on a set and a test npz.

    python tests/scripts/pytorch_example.py SET_FOLDER TEST_NPZ [RESULTS_JSON]

The example's two paths (the set's folder and the target's test npz) are replaced by the
arguments; nothing else is changed. Prints the accuracy it reached (and writes it, with the
command, to RESULTS_JSON when given). Needs numpy and torch only: no kerasdistill import.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                    "distilled-sets.md")


def example_code() -> str:
    with open(DOCS) as f:
        text = f.read()
    section = text[text.index("## With PyTorch, through the npz"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def run(set_folder: str, test_npz: str) -> float:
    code = example_code()
    code = re.sub(r'^DISTILLED = ".*"$', f"DISTILLED = {set_folder!r}", code, flags=re.M)
    code = code.replace('np.load("mnist.npz")', f"np.load({test_npz!r})")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/distilled-sets.md (PyTorch example)", "exec"), {})
    return float(printed.getvalue().split("test accuracy")[-1])


if __name__ == "__main__":
    accuracy = run(sys.argv[1], sys.argv[2])
    print(f"test accuracy {accuracy:.4f}")
    if len(sys.argv) > 3:  # RESULTS_JSON, with the inputs as config.json beside it
        import platform

        import torch
        folder = os.path.dirname(sys.argv[3])
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"command": "python tests/scripts/pytorch_example.py "
                                  + " ".join(sys.argv[1:4]),
                       "set": sys.argv[1], "test_npz": sys.argv[2],
                       "example": "docs/distilled-sets.md, With PyTorch, through the npz",
                       "torch_version": torch.__version__, "device": "cpu",
                       "machine": platform.machine()}, f, indent=1)
        with open(sys.argv[3], "w") as f:
            json.dump({"test_accuracy": accuracy, "models": 1, "seed": 0}, f, indent=1)
