#!/usr/bin/env python
"""One prepared sitting on a GPU machine: the answers a GPU user asks first, in one call.

    python benchmarks/gpu_sitting.py --output_dir=$OUT --data_dir=.sitting/data \
        --authors_repo_dir=.sitting/authors

Parts, in the order a GPU user asks (each a subprocess under its own time cap; a part
that reaches its cap is stopped and the sitting goes on with what it wrote):

 1. probe            what is there: nvidia-smi, TensorFlow and the GPUs it sees, torch.
 2. meta_step_lenet  `experiments.benchmark --measure=sweep`, LeNet on MNIST shapes: both
                     algorithms, XLA off and on, float32 and mixed bf16 convolutions, peak
                     device memory each, and what `--jit_compile=auto` decides.
 3. authors_lenet    the authors' PyTorch step on the same device and shapes
                     (benchmarks/authors_pytorch_step.py --device=auto: CUDA where torch
                     sees it).
 4. meta_step_alexnet, 5. authors_alexnet: the same on CIFAR-10 shapes (AlexNet).
 6. mnist_protocol   the README's main job (MNIST n = 100, the paper's 400 epochs, 20 test
                     models), timed phase by phase; its run folder comes back as
                     mnist_n100_ld.tar.gz, which `--resume_mnist` takes on a later sitting.
 7. cifar10_steps    as many meta steps of the paper's CIFAR-10 AlexNet protocol as fit in
                     what is left (epochs chosen from part 4's step time; CIFAR-10 itself
                     when --data_dir has cifar10.npz, else random images of its shapes and
                     sizes, made here: a timing, not an accuracy).

Writes into --output_dir (at most three files, as the device tool brings back):
gpu_sitting.json (every part: status, seconds, cap, reason, figures; a `headline` that
BENCHMARKS.md and RESULTS.md quote), gpu_sitting.log (every part's output), and the
MNIST run's tarball. The JSON is rewritten after every part.

Only the standard library is imported here (numpy only to make the synthetic CIFAR-10):
the sitting must start, and say what is missing, on a machine without TensorFlow or
torch. `--scale=tiny --allow_cpu` runs every part at a tiny size on a CPU
(tests/test_gpu_sitting.py), so a lent device adds only speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

from machine import cpu_model  # benchmarks/machine.py, beside this script

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY_FILE = "gpu_sitting.json"
LOG_FILE = "gpu_sitting.log"
MNIST_RUN = "mnist_n100_ld"
MNIST_TARBALL = MNIST_RUN + ".tar.gz"
SCALES = ("full", "tiny")
# Seconds kept back at the end: stopping a capped part (up to 5 s), packing the run
# folder and the last summary.
RESERVE_SECONDS = 20


@dataclasses.dataclass
class PartResult:
    """One part of the sitting, as the summary records it."""
    name: str
    status: str  # done | capped | failed | skipped
    seconds: float = 0.0
    cap_seconds: float | None = None
    reason: str | None = None
    command: list | None = None
    result: dict | None = None


# --------------------------------------------------------------------------
# Running a part
# --------------------------------------------------------------------------
def run_capped(command: list[str], cap_seconds: float, log, env=None,
               cwd=REPO_ROOT) -> tuple[str, float, int | None]:
    """Runs `command` with its output appended to `log`; stops its whole process group
    at `cap_seconds`. Returns (done | capped | failed, seconds, exit status)."""
    log.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(command)} "
              f"(cap {cap_seconds:.0f} s)\n")
    log.flush()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                               env=env, start_new_session=True)
    try:
        code = process.wait(timeout=max(1.0, cap_seconds))
    except BaseException as stop:  # the cap, or the driver itself told to stop
        _stop_group(process)
        if not isinstance(stop, subprocess.TimeoutExpired):
            raise
        seconds = time.perf_counter() - start
        log.write(f"===== capped after {seconds:.1f} s\n")
        log.flush()
        return "capped", seconds, None
    seconds = time.perf_counter() - start
    log.write(f"===== exit status {code} after {seconds:.1f} s\n")
    log.flush()
    return ("done" if code == 0 else "failed"), seconds, code


def _stop_group(process: subprocess.Popen):
    """SIGTERM to the part's process group, then SIGKILL to whatever of the group is
    left after at most 5 s, children included, so that nothing holds the GPU into the
    next part (a run's checkpoint is one atomic unit: a kill at any instant leaves the
    old or the new one)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json_atomic(path: str, payload: dict, placeholders: dict | None = None):
    """Writes `payload` as JSON through a temporary file and a rename; each path in
    `placeholders` (path -> name) is written as its name, so that a committed summary
    names no folder of the machine it ran on."""
    text = json.dumps(payload, indent=1) + "\n"
    for where in sorted(placeholders or {}, key=len, reverse=True):
        if os.path.isabs(where) and where != os.sep:
            # Whole path components only: /work/main must not eat /work/main_old.
            text = re.sub(re.escape(json.dumps(where)[1:-1]) + r'(?=[/"\s=,:]|$)',
                          placeholders[where].replace("\\", "\\\\"), text)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


# --------------------------------------------------------------------------
# Before the call: does the tree travel?
# --------------------------------------------------------------------------
# The device tool sends the checkout's tracked and untracked-not-ignored files plus the
# carried folders, 64 MiB in all; a call over it is refused before any device time.
TRANSFER_LIMIT_MIB = 64


def transfer_sizes(carry=(".sitting",)) -> dict:
    """Bytes the device call would send: the checkout's files git does not ignore, and
    each carried folder."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, cwd=REPO_ROOT,
                            check=True).stdout.split(b"\0")
    tree = sum(os.path.getsize(os.path.join(REPO_ROOT, name.decode()))
               for name in listed if name and os.path.isfile(os.path.join(REPO_ROOT,
                                                                          name.decode())))
    carried = {}
    for folder in carry:
        path = os.path.join(REPO_ROOT, folder)
        carried[folder] = sum(os.path.getsize(os.path.join(top, name))
                              for top, _, names in os.walk(path) for name in names)
    return {"tree_bytes": tree, "carried_bytes": carried,
            "total_mib": (tree + sum(carried.values())) / 2 ** 20}


def preflight(limit_mib: float = TRANSFER_LIMIT_MIB, carry=(".sitting",)) -> tuple[bool, str]:
    """(fits?, what would travel, in words), checked here before any device time."""
    sizes = transfer_sizes(carry)
    words = [f"the checkout's files: {sizes['tree_bytes'] / 2 ** 20:.1f} MiB"]
    words += [f"{folder}: {size / 2 ** 20:.1f} MiB"
              for folder, size in sizes["carried_bytes"].items()]
    fits = sizes["total_mib"] <= limit_mib
    return fits, (f"{'fits' if fits else 'does NOT fit'}: {sizes['total_mib']:.1f} MiB of "
                  f"{limit_mib:g} ({', '.join(words)})")


# --------------------------------------------------------------------------
# Probe
# --------------------------------------------------------------------------
_TF_PROBE = r"""
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
from tensorflow.python.platform import build_info
info = build_info.build_info
gpus = tf.config.list_physical_devices("GPU")
print("PROBE " + json.dumps({"version": tf.__version__,
    "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name)
             for g in gpus],
    "built_for_cuda": info.get("cuda_version"), "built_for_cudnn": info.get("cudnn_version")}))
"""
_TORCH_PROBE = r"""
import json, torch
cuda = torch.cuda.is_available()
print("PROBE " + json.dumps({"version": torch.__version__, "cuda": cuda,
    "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}))
"""


def probe_python(python: list[str], code: str, cap_seconds: float = 60) -> dict:
    """{"importable": True, ...what the probe printed} or {"importable": False,
    "reason": the last line of the error}."""
    try:
        done = subprocess.run([*python, "-c", code], capture_output=True, text=True,
                              timeout=cap_seconds, cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"importable": False, "reason": f"{type(error).__name__}: {error}"}
    for line in done.stdout.splitlines():
        if line.startswith("PROBE "):
            return {"importable": True, **json.loads(line[len("PROBE "):])}
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return {"importable": False,
            "reason": lines[-1] if lines else f"exit status {done.returncode}"}


def probe_nvidia_smi() -> dict:
    if not shutil.which("nvidia-smi"):
        return {"found": False}
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"found": True, "error": str(error)}
    return {"found": True, "gpus": [line.strip() for line in done.stdout.splitlines()
                                    if line.strip()]}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=REPO_ROOT, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


# --------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Scale:
    """Sizes of the parts: the device's (`full`) or a CPU check's (`tiny`)."""
    sweep_flags: dict            # architecture -> extra experiments.benchmark flags
    authors_flags: tuple
    mnist_flags: tuple           # extra experiments.distill flags (none: the README's)
    cifar_flags: tuple
    synthetic_cifar: tuple       # (train, test) image counts
    caps: dict                   # fixed caps in seconds; the protocol parts share the rest
    cifar_share: float           # of the time left when the MNIST protocol starts


FULL = Scale(
    sweep_flags={"lenet": (), "alexnet": ()},
    authors_flags=("--warmup=5", "--steps=20"),
    mnist_flags=(),
    cifar_flags=(),
    synthetic_cifar=(50000, 10000),
    caps={"probe": 60, "meta_step_lenet": 75, "authors_lenet": 30, "meta_step_alexnet": 75,
          "authors_alexnet": 30},
    cifar_share=0.25)
TINY = Scale(
    sweep_flags={"lenet": ("--outer_batch_size=32", "--sweep_precisions=float32"),
                 "alexnet": ("--outer_batch_size=32", "--sweep_algorithms=second_order",
                             "--sweep_jit_compile=false", "--sweep_precisions=float32")},
    authors_flags=("--warmup=1", "--steps=2", "--outer_batch=32"),
    mnist_flags=("--num_base_examples=10", "--epochs=1", "--num_validation=100",
                 "--outer_batch_size=64", "--test_repetitions=2",
                 "--validation_every_epochs=1"),
    cifar_flags=("--num_base_examples=10", "--num_validation=100", "--outer_batch_size=32",
                 "--test_repetitions=1"),
    synthetic_cifar=(400, 100),
    caps={"probe": 60, "meta_step_lenet": 240, "authors_lenet": 120,
          "meta_step_alexnet": 240, "authors_alexnet": 120},
    cifar_share=0.5)


def meta_step_command(python, architecture, scale: Scale, output_json):
    steps = ("--steps=20", "--rounds=1")
    return [*python, "-m", "experiments.benchmark", "--measure=sweep",
            f"--architecture={architecture}", *steps, *scale.sweep_flags[architecture],
            f"--output_json={output_json}"]


def authors_command(torch_python, architecture, scale: Scale, repo_dir, output_json):
    return [*torch_python, os.path.join(REPO_ROOT, "benchmarks", "authors_pytorch_step.py"),
            f"--repo_dir={repo_dir}", f"--architecture={architecture}", "--device=auto",
            "--check_equivalence", *scale.authors_flags, f"--output_json={output_json}"]


def distill_command(python, target, data_dir, model_dir, flags):
    return [*python, "-m", "experiments.distill", f"--target={target}",
            f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--verbose=false", *flags]


def make_synthetic_cifar10(folder: str, num_train: int, num_test: int) -> str:
    """Random uint8 images of CIFAR-10's shapes and sizes (a meta step's cost does not
    depend on the pixels), for a device the real file cannot travel to (139 MB)."""
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    path = os.path.join(folder, "cifar10.npz")
    np.savez(path, x_train=rng.integers(0, 256, (num_train, 32, 32, 3), dtype=np.uint8),
             y_train=rng.integers(0, 10, (num_train, 1), dtype=np.uint8),
             x_test=rng.integers(0, 256, (num_test, 32, 32, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, (num_test, 1), dtype=np.uint8))
    return path


def protocol_step_ms(sweep: dict | None) -> float | None:
    """The protocol's default meta step (second order, float32) in the sweep, with XLA
    as `--jit_compile=auto` decided there."""
    if not sweep:
        return None
    jit = (sweep.get("jit_compile_auto", {}).get("second_order") or {}).get("jit_compile",
                                                                            False)
    for entry in sweep.get("configurations", []):
        if (entry["algorithm"], entry["jit_compile"], entry["outer_precision"]) == (
                "second_order", jit, "float32"):
            return entry["ms_per_step_median"]
    return None


# CIFAR-10's 50,000 training images less the protocol's 5,000 for validation, in outer
# batches of 1,024 (the last one wrapped).
CIFAR10_STEPS_PER_EPOCH = 44


def cifar_epochs(step_ms: float | None, seconds: float,
                 steps_per_epoch: int = CIFAR10_STEPS_PER_EPOCH) -> int:
    """Epochs of the CIFAR-10 timing run: half of `seconds` for meta steps at `step_ms`
    (the rest: start-up, tracing, validation and two test models), at least one."""
    if not step_ms:
        return 1
    return max(1, math.floor(0.5 * seconds / (steps_per_epoch * step_ms / 1000)))


# --------------------------------------------------------------------------
# Headline
# --------------------------------------------------------------------------
def headline(parts: dict[str, PartResult]) -> dict:
    """The figures a GPU user asks first, from the parts' results."""
    out = {}
    for architecture in ("lenet", "alexnet"):
        sweep = (parts.get(f"meta_step_{architecture}") or PartResult("", "")).result
        authors = (parts.get(f"authors_{architecture}") or PartResult("", "")).result
        entry = {}
        second_order = [e for e in (sweep or {}).get("configurations", [])
                        if e["algorithm"] == "second_order"]
        if second_order:  # the authors' step is second-order: compare like with like
            entry["kerasdistill_best_second_order"] = min(
                second_order, key=lambda e: e["ms_per_step_median"])
            entry["kerasdistill_protocol_default_ms"] = protocol_step_ms(sweep)
            entry["jit_compile_auto"] = sweep.get("jit_compile_auto")
        if authors:
            entry["authors_ms"] = authors.get("ms_per_step_median")
            entry["authors_device"] = authors.get("gpu_name") or authors.get("device")
        if entry.get("authors_ms") and entry.get("kerasdistill_protocol_default_ms"):
            entry["protocol_default_vs_authors"] = (
                entry["kerasdistill_protocol_default_ms"] / entry["authors_ms"])
        if entry:
            out[architecture] = entry
    for name in ("mnist_protocol", "cifar10_steps"):
        result = (parts.get(name) or PartResult("", "")).result
        if result:
            out[name] = result
    return out


def markdown(summary: dict) -> str:
    """The summary as the rows BENCHMARKS.md and RESULTS.md quote."""
    lines = [f"GPU sitting {summary['sitting']['started']} on "
             f"{summary['probe'].get('device_words', '?')} (scale {summary['sitting']['scale']})",
             "", "| part | status | seconds | cap | reason |", "|---|---|---|---|---|"]
    for part in summary["parts"]:
        lines.append(f"| {part['name']} | {part['status']} | {part['seconds']:.0f} | "
                     f"{part['cap_seconds'] or 0:.0f} | {part['reason'] or ''} |")
    top = summary["headline"]
    for architecture in ("lenet", "alexnet"):
        entry = top.get(architecture)
        if not entry:
            continue
        best = entry.get("kerasdistill_best_second_order", {})
        lines.append(f"\n{architecture}: kerasdistill protocol default "
                     f"{_ms(entry.get('kerasdistill_protocol_default_ms'))}, best second-order "
                     f"{_ms(best.get('ms_per_step_median'))} (XLA "
                     f"{'on' if best.get('jit_compile') else 'off'}, "
                     f"{best.get('outer_precision')}); authors' PyTorch "
                     f"{_ms(entry.get('authors_ms'))} on {entry.get('authors_device')}")
    mnist = top.get("mnist_protocol")
    if mnist:
        lines.append(f"\nMNIST protocol, n = {mnist.get('num_base_examples')}, "
                     f"{mnist.get('epochs')} epochs: {_percent(mnist.get('test_accuracy_mean'))} "
                     f"+- {_percent(mnist.get('test_accuracy_std'))}, wall times "
                     f"{mnist.get('wall_times')}")
    cifar = top.get("cifar10_steps")
    if cifar:
        lines.append(f"\nCIFAR-10 AlexNet protocol ({cifar.get('data')}): "
                     f"{cifar.get('meta_steps')} meta steps, "
                     f"{_ms(cifar.get('ms_per_meta_step'))} each in the loop")
    return "\n".join(lines)


def _ms(value):
    return f"{value:.2f} ms" if value else "-"


def _percent(value):
    return f"{100 * value:.2f}" if value is not None else "-"


def run_result(model_dir: str) -> dict | None:
    """A finished run's figures, for the summary."""
    results = read_json(os.path.join(model_dir, "results.json"))
    config = read_json(os.path.join(model_dir, "config.json"))
    if not results:
        return None
    return {key: results.get(key) for key in (
        "test_accuracy_mean", "test_accuracy_std", "num_train_steps", "meta_steps",
        "validation_error", "wall_times")} | {
        "num_base_examples": (config or {}).get("distill", {}).get("num_base_examples"),
        "epochs": (config or {}).get("distill", {}).get("epochs"),
        "resolved": (config or {}).get("resolved"), "device": (config or {}).get("device")}


# --------------------------------------------------------------------------
# The sitting
# --------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", help="$OUT on the device.")
    parser.add_argument("--preflight", action="store_true",
                        help="Here, before the call: say whether the checkout and the "
                             "carried folders (--carry) fit the device tool's 64 MiB; run "
                             "nothing.")
    parser.add_argument("--carry", default=".sitting",
                        help="--preflight: the folders the call will carry, comma-separated "
                             "(the device tool's `carry`).")
    parser.add_argument("--data_dir", default=os.path.join(REPO_ROOT, ".sitting", "data"),
                        help="Holds mnist.npz (11 MB, travels); cifar10.npz if it can.")
    parser.add_argument("--authors_repo_dir",
                        default=os.path.join(REPO_ROOT, ".sitting", "authors"),
                        help="An extracted copy of ondrejbohdal/label-distillation "
                             "(benchmarks/README.md says how to get it; 354 KB).")
    parser.add_argument("--total_seconds", type=float, default=480,
                        help="The whole sitting's time; the protocol parts share what "
                             "the fixed caps leave.")
    parser.add_argument("--scale", choices=SCALES, default="full")
    parser.add_argument("--allow_cpu", action="store_true",
                        help="Run the TensorFlow parts where TensorFlow sees no GPU "
                             "(the CPU check; on a device they would waste its minutes).")
    parser.add_argument("--python", default=sys.executable,
                        help="Interpreter of the project's parts (TensorFlow).")
    parser.add_argument("--torch_python", default=sys.executable,
                        help="Interpreter of the authors' PyTorch step.")
    parser.add_argument("--resume_mnist", default=None,
                        help=f"A {MNIST_TARBALL} from an earlier sitting: its run resumes.")
    parser.add_argument("--work_dir", default=None,
                        help="Where the parts write (default: a new temporary folder).")
    return parser.parse_args(argv)


class Sitting:
    """The parts in order, each under its cap, the summary rewritten after each."""

    def __init__(self, args):
        self.args = args
        self.scale = FULL if args.scale == "full" else TINY
        self.start = time.monotonic()
        os.makedirs(args.output_dir, exist_ok=True)
        self.work = args.work_dir or tempfile.mkdtemp(prefix="gpu_sitting_")
        os.makedirs(self.work, exist_ok=True)
        self.log = open(os.path.join(args.output_dir, LOG_FILE), "a")
        self.parts: dict[str, PartResult] = {}
        self.python, self.torch_python = [args.python], [args.torch_python]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
            filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))}
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Longest first: the work folder may lie inside the checkout or the output.
        self.placeholders = {os.path.abspath(args.output_dir): "$OUT",
                             os.path.abspath(self.work): "$WORK",
                             os.path.abspath(args.data_dir): "$DATA_DIR",
                             os.path.abspath(args.authors_repo_dir): "$AUTHORS",
                             os.path.abspath(args.python): "python",
                             os.path.abspath(args.torch_python): "python",
                             REPO_ROOT: "."}
        self.summary = {"sitting": {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                    "scale": args.scale, "total_seconds": args.total_seconds,
                                    "commit": git_commit(), "argv": sys.argv[1:]},
                        "probe": {}, "parts": [], "headline": {}}

    def left(self) -> float:
        return self.args.total_seconds - (time.monotonic() - self.start)

    def record(self, part: PartResult):
        self.parts[part.name] = part
        print(f"[{time.monotonic() - self.start:6.0f} s] {part.name}: {part.status}"
              f"{' (' + part.reason + ')' if part.reason else ''}", flush=True)
        self.summary["parts"] = [dataclasses.asdict(p) for p in self.parts.values()]
        self.summary["headline"] = headline(self.parts)
        self.write_summary()

    def write_summary(self):
        write_json_atomic(os.path.join(self.args.output_dir, SUMMARY_FILE), self.summary,
                          self.placeholders)

    def run_part(self, name, command, cap, output_json=None, reading=None):
        cap = min(cap, self.left() - RESERVE_SECONDS)
        if cap < 5:
            self.record(PartResult(name, "skipped", reason="no time left"))
            return
        if output_json and os.path.exists(output_json):
            os.remove(output_json)  # an earlier sitting's, in a reused --work_dir
        status, seconds, code = run_capped(command, cap, self.log, self.env)
        result = reading() if reading else read_json(output_json) if output_json else None
        reason = (f"exit status {code}, see {LOG_FILE}" if status == "failed" else
                  "stopped at its cap; what it wrote is kept" if status == "capped" else None)
        self.record(PartResult(name, status, seconds, cap, reason, command, result))

    def probe(self):
        start = time.perf_counter()
        each = self.scale.caps["probe"] / 2  # TensorFlow's import is the slow one
        tensorflow = probe_python(self.python, _TF_PROBE, each)
        torch = probe_python(self.torch_python, _TORCH_PROBE, each)
        nvidia = probe_nvidia_smi()
        words = [cpu_model() or "?", f"{os.cpu_count()} cores"] + (nvidia.get("gpus") or [])
        self.summary["probe"] = {"tensorflow": tensorflow, "torch": torch,
                                 "nvidia_smi": nvidia, "cpu_model": cpu_model(),
                                 "cpu_count": os.cpu_count(), "device_words": "; ".join(words)}
        self.record(PartResult("probe", "done", time.perf_counter() - start,
                               self.scale.caps["probe"], result=self.summary["probe"]))

    def tensorflow_refusal(self) -> str | None:
        """Why the project's parts cannot run here, or None."""
        tensorflow = self.summary["probe"]["tensorflow"]
        if not tensorflow["importable"]:
            return f"TensorFlow is not importable by {self.args.python}: {tensorflow['reason']}"
        if not tensorflow["gpus"] and not self.args.allow_cpu:
            return (f"TensorFlow {tensorflow['version']} (built for CUDA "
                    f"{tensorflow['built_for_cuda']}) sees no GPU; --allow_cpu runs anyway")
        return None

    def torch_refusal(self) -> str | None:
        torch = self.summary["probe"]["torch"]
        if not torch["importable"]:
            return f"torch is not importable by {self.args.torch_python}: {torch['reason']}"
        if not torch["cuda"] and not self.args.allow_cpu:
            return f"torch {torch['version']} sees no CUDA device; --allow_cpu runs anyway"
        authors = self.args.authors_repo_dir
        if not os.path.exists(os.path.join(authors, "label_distillation_or2.py")):
            return (f"the authors' code is not in --authors_repo_dir={authors} (extract "
                    f"ondrejbohdal/label-distillation there: benchmarks/README.md)")
        return None

    def meta_step(self, architecture):
        name = f"meta_step_{architecture}"
        why = self.tensorflow_refusal()
        if why:
            return self.record(PartResult(name, "skipped", reason=why))
        output = os.path.join(self.work, f"{name}.json")
        self.run_part(name, meta_step_command(self.python, architecture, self.scale, output),
                      self.scale.caps[name], output)

    def authors(self, architecture):
        name = f"authors_{architecture}"
        why = self.torch_refusal()
        if why:
            return self.record(PartResult(name, "skipped", reason=why))
        output = os.path.join(self.work, f"{name}.json")
        self.run_part(name, authors_command(self.torch_python, architecture, self.scale,
                                            self.args.authors_repo_dir, output),
                      self.scale.caps[name], output)

    def mnist_protocol(self):
        name = "mnist_protocol"
        why = self.tensorflow_refusal()
        mnist = os.path.join(self.args.data_dir, "mnist.npz")
        if not why and not os.path.exists(mnist):
            why = (f"{mnist} is missing (11 MB: copy ../shared/data/mnist.npz into the "
                   f"carried folder)")
        if why:
            return self.record(PartResult(name, "skipped", reason=why))
        model_dir = os.path.join(self.work, MNIST_RUN)
        if self.args.resume_mnist and not os.path.exists(model_dir):
            with tarfile.open(self.args.resume_mnist) as archive:
                archive.extractall(self.work, filter="data")
        # The CIFAR-10 part gets its share of what is left after this one.
        cap = (self.left() - RESERVE_SECONDS) * (1 - self.scale.cifar_share)
        self.run_part(name, distill_command(self.python, "mnist", self.args.data_dir,
                                            model_dir, self.scale.mnist_flags),
                      cap, reading=lambda: run_result(model_dir))
        if os.path.isdir(model_dir):
            tarball = os.path.join(self.args.output_dir, MNIST_TARBALL)
            with tarfile.open(tarball + ".tmp", "w:gz") as archive:
                archive.add(model_dir, arcname=MNIST_RUN)
            os.replace(tarball + ".tmp", tarball)  # a kill mid-write leaves no torn tarball

    def cifar10_steps(self):
        name = "cifar10_steps"
        why = self.tensorflow_refusal()
        if why:
            return self.record(PartResult(name, "skipped", reason=why))
        data_dir, data = self.args.data_dir, "CIFAR-10"
        if not os.path.exists(os.path.join(data_dir, "cifar10.npz")):
            data_dir, data = os.path.join(self.work, "synthetic_data"), \
                "random images of CIFAR-10's shapes and sizes (a timing only)"
            make_synthetic_cifar10(data_dir, *self.scale.synthetic_cifar)
        cap = self.left() - RESERVE_SECONDS
        step_ms = protocol_step_ms((self.parts.get("meta_step_alexnet")
                                    or PartResult("", "")).result)
        epochs = cifar_epochs(step_ms, cap) if self.args.scale == "full" else 1
        model_dir = os.path.join(self.work, "cifar10_n100_ld_timing")

        def reading():
            result = run_result(model_dir)
            if result and result.get("meta_steps") and "meta_train_seconds" in (
                    result.get("wall_times") or {}):
                result["ms_per_meta_step"] = (1000 * result["wall_times"]["meta_train_seconds"]
                                              / result["meta_steps"])
                result.update(data=data, epochs=epochs)
            return result
        # results.json (the timing) is written when the run ends: its epochs are chosen
        # to end well inside the cap.
        self.run_part(name, distill_command(self.python, "cifar10", data_dir, model_dir,
                                            (f"--epochs={epochs}", "--test_repetitions=2",
                                             *self.scale.cifar_flags)),
                      cap, reading=reading)

    def run(self) -> dict:
        signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the running part too
        parts = (("probe", self.probe), ("meta_step_lenet", lambda: self.meta_step("lenet")),
                 ("authors_lenet", lambda: self.authors("lenet")),
                 ("meta_step_alexnet", lambda: self.meta_step("alexnet")),
                 ("authors_alexnet", lambda: self.authors("alexnet")),
                 ("mnist_protocol", self.mnist_protocol), ("cifar10_steps", self.cifar10_steps))
        for name, part in parts:
            try:
                part()
            except KeyboardInterrupt:
                self.record(PartResult(name, "failed", reason="the sitting was stopped"))
                break
            except Exception as error:  # noqa: BLE001 - one part's fault ends only that part
                self.record(PartResult(name, "failed", reason=f"{type(error).__name__}: "
                                                              f"{error}"))
        self.summary["sitting"]["seconds"] = time.monotonic() - self.start
        self.write_summary()
        text = markdown(self.summary)
        self.log.write("\n" + text + "\n")
        self.log.close()
        print(text)
        return self.summary


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(argv)
    if args.preflight:
        fits, words = preflight(carry=tuple(filter(None, args.carry.split(","))))
        print(words)
        sys.exit(0 if fits else 2)
    if not args.output_dir:
        sys.exit("error: --output_dir is needed (or --preflight)")
    if args.resume_mnist and not tarfile.is_tarfile(args.resume_mnist):
        sys.exit(f"error: --resume_mnist={args.resume_mnist} is not a readable tarball")
    Sitting(args).run()


if __name__ == "__main__":
    main()
