"""Runs what an experiment plan still lacks: finished runs are skipped, interrupted
ones resume from their checkpoints (run_experiment does), and a run that cannot start
(its data is not on this machine, say) is recorded and the others go on."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import shlex
import sys
import time
import traceback

from kerasdistill.distill.identity import run_identity
from kerasdistill.errors import DataNotFoundError, DistillError, FolderInUseError
from kerasdistill.experiment import ExperimentConfig, resolve, run_experiment, to_json_dict
from kerasdistill.files import check_not_in_use, folder_held_briefly, read_json, write_json_atomic
from kerasdistill.reproduction.plans import ExperimentPlan

STATUS_FILE = "reproduce_status.json"  # per output folder: why runs did not finish


def result_at(results: dict, key: str | None) -> dict | None:
    """The summary a planned cell reads: the run's own, or a transfer entry."""
    if key is None:
        return results if "test_accuracy_mean" in results else None
    node = results
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def why_not_finished(results: dict | None, config: ExperimentConfig, keys) -> str | None:
    """None when `results` (a run folder's results.json, None if absent) is of this run
    (its identity), the planned epochs and test models, with every cell the plan reads
    from it; else what is missing."""
    if results is None:
        return "no results.json yet"
    if results.get("run_identity") != run_identity(to_json_dict(resolve(config))):
        return "another run's settings"  # run_experiment will say what differs
    if results.get("epochs") != config.distill.epochs:
        return f"{results.get('epochs')} epochs, the plan has {config.distill.epochs}"
    if len(results.get("test_accuracies", [])) != config.test_repetitions:
        return (f"{len(results.get('test_accuracies', []))} test models, the plan has "
                f"{config.test_repetitions}")
    missing = [key for key in keys if result_at(results, key) is None]
    return f"no {', '.join(missing)} yet" if missing else None


def finished_results(folder: str, config: ExperimentConfig, keys) -> dict | None:
    """The folder's results.json when it holds this run, finished as planned; else None."""
    path = os.path.join(folder, "results.json")
    results = read_json(path, "a run's results") if os.path.exists(path) else None
    return results if why_not_finished(results, config, keys) is None else None


def is_finished(folder: str, config: ExperimentConfig, keys) -> bool:
    return finished_results(folder, config, keys) is not None


def pending_folders(plan: ExperimentPlan, output_dir: str, only: str | None = None) -> list:
    """The plan's folders that are not finished as planned, in plan order."""
    return [folder for folder, (config, keys) in folders_of(plan, only).items()
            if not is_finished(os.path.join(output_dir, folder), config, keys)]


def folders_of(plan: ExperimentPlan, only: str | None = None) -> dict[str, tuple]:
    """{folder: (config, [result keys])} in plan order; `only`: a glob on the folder's
    path below the output folder (e.g. "*/n100_*", "*fashion_mnist_to_mnist_n100_*")."""
    folders: dict[str, tuple] = {}
    for run in plan.runs:
        if only and not fnmatch.fnmatch(run.folder, only):
            continue
        config, keys = folders.setdefault(run.folder, (run.config, []))
        if config != run.config:
            raise AssertionError(f"plan {plan.name} gives {run.folder} two configs")
        keys.append(run.result_key)
    return folders


def held_folders(plan: ExperimentPlan, output_dir: str) -> list[str]:
    """The plan's folders that another process holds now (a worker running them)."""
    held = []
    for folder in folders_of(plan):
        try:
            check_not_in_use(os.path.join(output_dir, folder))
        except FolderInUseError:
            held.append(folder)
    return held


def one_run_command(plan: ExperimentPlan, folder: str, output_dir: str,
                    data_dir: str | None) -> str:
    """A shell command that runs the one folder of `plan` (a job runner's line)."""
    words = ["python", "-m", "experiments.reproduce", f"--experiment={plan.name}",
             f"--budget={plan.budget}", f"--output_dir={output_dir}", f"--runs={folder}"]
    if data_dir:
        words.append(f"--data_dir={data_dir}")
    return " ".join(shlex.quote(word) for word in words)


def _record_status(status_path: str, folder: str, reason: str | None):
    """Sets (or, with None, clears) one folder's failure in the status file, read afresh
    under the output folder's lock, so that a plan running beside this one keeps its own
    entries."""
    output_dir = os.path.dirname(status_path) or "."
    os.makedirs(output_dir, exist_ok=True)
    with folder_held_briefly(output_dir):
        recorded = read_json(status_path, "the reproduce status") if os.path.exists(
            status_path) else {}
        if reason is None and folder not in recorded:
            return
        if reason is None:
            recorded.pop(folder)
        else:
            recorded[folder] = reason
        write_json_atomic(status_path, recorded)


def _unexpected(error: Exception) -> str:
    """One line for an error that is not a DistillError: its type and its message's last
    line that says a cause (a tf.function's error starts "in user code:" and ends with
    the cause; a runtime error puts the cause first and node names after it)."""
    lines = [re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line).strip()
             for line in str(error).splitlines()]
    # A runtime error (out of memory, shapes) ends with the node and op names and a hint.
    causes = [line for line in lines if line and not line.startswith(("[[", "[Op:", "Hint:"))]
    return f"{type(error).__name__}: {causes[-1] if causes else ''}"


def run_plan(plan: ExperimentPlan, output_dir: str, data_dir: str | None,
             only: str | None = None, verbose: bool = True) -> dict[str, str]:
    """Runs every unfinished folder of `plan`; returns {folder: status} with status
    "done", "skipped (finished)", "skipped (held by another process)" (another worker on
    the same output folder runs it: each run is claimed by its folder's lock),
    "no data: <reason>" (the data are not on this machine: not a failure) or
    "failed: <reason>", and records why a run did not finish in
    <output_dir>/reproduce_status.json for the report."""
    statuses = {}
    status_path = os.path.join(output_dir, STATUS_FILE)
    for folder, (config, keys) in folders_of(plan, only).items():
        model_dir = os.path.join(output_dir, folder)
        config = dataclasses.replace(config, data_dir=data_dir)
        if is_finished(model_dir, config, keys):
            statuses[folder] = "skipped (finished)"
            _record_status(status_path, folder, None)
            continue
        if verbose:
            print(f"[{plan.name}/{plan.budget}] {folder}", file=sys.stderr)
        start = time.perf_counter()
        try:
            # Looked at again under the folder's lock: another worker may have finished it
            # since the look above.
            found = {}

            def finished_meanwhile(model_dir=model_dir, config=config, keys=keys):
                found["results"] = finished_results(model_dir, config, keys)
                return found["results"]
            run_experiment(config, model_dir, verbose=verbose, finished=finished_meanwhile)
        except FolderInUseError:
            statuses[folder] = "skipped (held by another process)"
            if verbose:
                print("  skipped: another process is running it", file=sys.stderr)
            continue
        except Exception as error:  # noqa: BLE001 - one run's failure (bad input, out of
            # memory, a TensorFlow error) is recorded and the other runs go on
            reason = str(error) if isinstance(error, DistillError) else _unexpected(error)
            if isinstance(error, DataNotFoundError):
                reason = f"data not on this machine: {reason}"
                statuses[folder] = f"no data: {reason}"
            else:
                statuses[folder] = f"failed: {reason}"
            _record_status(status_path, folder, reason)
            if not isinstance(error, DistillError):
                # Not bad input but a fault: the whole traceback, verbose or not, so a
                # background plan's log says where it happened.
                traceback.print_exc(file=sys.stderr)
            if verbose:
                print(f"  not run: {reason}", file=sys.stderr)
        else:
            statuses[folder] = ("skipped (finished)" if found.get("results") is not None
                                else f"done in {time.perf_counter() - start:.0f} s")
            _record_status(status_path, folder, None)
    return statuses
