"""What makes two runs the same run, and the checks that keep a `--model_dir` (and a
checkpoint) to one.

A run's identity is every setting that changes its labels or what its numbers
mean (datasets, architecture, algorithm, base examples, sizes, precision, seed,
learning rates, ...), with defaults resolved so that spelling a default out does
not count as a change. Settings that change neither are left out:

- free: `jit_compile`, `steps_per_call` and `distribute` (the same function,
  compiled, called or spread over devices differently), `data_dir` and `download` (where the same
  data come from), and the evaluation-only settings (`test_repetitions` and the
  transfer flags), so a finished run can be evaluated again or further;
- extensible: `epochs` may grow (the run continues from its checkpoint) but not
  shrink.

`check_model_dir` compares a command's identity with what a folder holds before
anything in it is written.
"""

from __future__ import annotations

import os

from kerasdistill.config import DistillConfig, identity_rules, identity_settings
from kerasdistill.errors import DistillError
from kerasdistill.files import read_json
from kerasdistill.training.solver import InnerSolver


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def _uses(flat: dict, get_dataset_spec) -> dict:
    """{part of a run (an option's `applies`): whether this run has it}."""
    baseline = flat.get("baseline") or "none"
    starts_from = flat.get("label_init", "uniform")
    return {
        "label_smoothing": baseline == "label_smoothing",
        # Only EMNIST's images depend on the orientation settings.
        "transposed_data": any(get_dataset_spec(flat[key]).stored_transposed
                               for key in ("target", "source") if flat.get(key)),
        # Only the baselines, scored starts and searched validation use the step search.
        "step_search": baseline != "none" or starts_from != "uniform" or
        flat.get("validation_steps", "learner") != "learner",
        "teacher": baseline == "teacher" or starts_from == "teacher",
    }


def run_identity(config: dict) -> dict:
    """The identity of the run that `config` (a resolved config.json dict) describes."""
    from kerasdistill.data.registry import get_dataset_spec
    from kerasdistill.data.user_data import identity_name
    from kerasdistill.distill.resets import default_reset_window
    rules = identity_rules()
    # Configs written by older versions lack newer keys: they compare as those
    # versions did, at the defaults.
    flat = {**rules.defaults, **_flatten(config)}
    if "emnist_orientation" not in config:
        # Written before 0.4, whose runs saw EMNIST upright (transposed back at load).
        flat["emnist_orientation"] = "upright"
    if flat.get("num_validation") is None:
        flat["num_validation"] = (
            "the re-split's" if flat.get("target_split") == "from_test"  # data/resplit.py
            else get_dataset_spec(flat["target"]).num_validation)
    if flat.get("distill.reset_window") is None:
        flat["distill.reset_window"] = default_reset_window(
            flat["distill.num_base_examples"], get_dataset_spec(flat["target"]).num_classes)
    uses = _uses(flat, get_dataset_spec)
    for key, part in rules.applies.items():
        if not uses[part]:  # a setting no part of this run reads
            flat.pop(key, None)
    for key, default in rules.omitted_at_default.items():
        if flat.get(key, default) == default:
            flat.pop(key, None)
    for key in ("target", "source"):
        if flat.get(key):  # a user's data by its contents, not by the path's spelling
            flat[key] = identity_name(flat[key])
    keep = (rules.names & set(flat)) - rules.free - rules.extensible
    return {key: flat[key] for key in sorted(keep)}


def identity_differences(stored: dict, requested: dict) -> list[str]:
    """Human-readable 'setting: stored (this command: requested)' for each difference."""
    return [f"{key} {stored.get(key)!r} (this command: {requested.get(key)!r})"
            for key in sorted(set(stored) | set(requested))
            if stored.get(key) != requested.get(key)]


def _refuse(model_dir: str, where: str, differences: list[str]):
    raise DistillError(
        f"--model_dir={model_dir} holds {where} with other settings: {'; '.join(differences)}. "
        f"Nothing was changed. Use another --model_dir, or repeat the run's own settings "
        f"(free to change: --epochs upwards, --test_repetitions, the transfer flags, "
        f"--jit_compile, --data_dir)")


def _check_same_user_data(model_dir: str, stored_config: dict, requested: dict):
    """A user's dataset (a path) must still hold the arrays the run began with: the
    identity config.json recorded names them by fingerprint (recomputing it would read
    the file as it is now)."""
    from kerasdistill.data.user_data import is_dataset_path
    recorded = stored_config.get("run_identity") or {}
    for key in ("target", "source"):
        name = stored_config.get(key)
        if name and is_dataset_path(name) and key in recorded and \
                recorded[key] != requested.get(key):
            raise DistillError(f"--model_dir={model_dir} holds a run begun on {recorded[key]}; "
                               f"{name} now holds {requested.get(key)}. Nothing was changed: "
                               f"give the run its data back, or use another --model_dir")


def check_model_dir(model_dir: str, config: dict):
    """Raises DistillError when `model_dir` holds a run other than `config`'s.

    Reads only. Looks at config.json, results.json and the newest checkpoint; a
    run may be continued with more epochs, never fewer.
    """
    from kerasdistill.distill.checkpoint import peek_progress
    if not os.path.exists(model_dir):
        return
    if not os.path.isdir(model_dir):
        raise DistillError(f"--model_dir={model_dir} exists and is not a folder")
    requested = run_identity(config)
    epochs = config["distill"]["epochs"]
    config_path = os.path.join(model_dir, "config.json")
    if os.path.exists(config_path):
        stored_config = read_json(config_path, "the run's config")
        differences = identity_differences(run_identity(stored_config), requested)
        if differences:
            _refuse(model_dir, "a run", differences)
        _check_same_user_data(model_dir, stored_config, requested)
        stored_epochs = stored_config.get("distill", {}).get("epochs", epochs)
        if stored_epochs > epochs:
            raise DistillError(
                f"--model_dir={model_dir} holds a run of {stored_epochs} epochs; --epochs={epochs} "
                f"would shorten it. Nothing was changed. Use --epochs={stored_epochs} or more, "
                f"or another --model_dir")
    results_path = os.path.join(model_dir, "results.json")
    if os.path.exists(results_path):
        stored = read_json(results_path, "the run's results").get("run_identity")
        if stored is not None and identity_differences(stored, requested):
            _refuse(model_dir, "finished results",
                    identity_differences(stored, requested))
    progress = peek_progress(os.path.join(model_dir, "checkpoint"))
    if progress is not None:
        stored = progress.get("identity") or {}
        if identity_differences(stored, requested):
            _refuse(model_dir, "a checkpoint", identity_differences(stored, requested))
        every = config["distill"]["validation_every_epochs"]
        if progress.get("epoch", 0) < epochs and progress.get("epoch", 0) % every:
            raise DistillError(
                f"--model_dir={model_dir} holds a run that ended at epoch {progress['epoch']}, "
                f"between the validation points (every {every} epochs; the last epoch is always "
                f"validated): extended to {epochs} epochs it would keep that extra point and "
                f"differ from a fresh {epochs}-epoch run. Nothing was changed. Use another "
                f"--model_dir")
        if progress.get("epoch", 0) > epochs:
            raise DistillError(
                f"--model_dir={model_dir} holds a checkpoint at epoch {progress['epoch']}, beyond "
                f"--epochs={epochs}. Nothing was changed. Use another --model_dir")


def loop_identity(config: DistillConfig, solver: InnerSolver, given_start: bool = False,
                  validation_checkpoints: list[int] | None = None) -> dict:
    """A checkpoint's identity when `distill_labels`' caller gives none (experiments give
    `run_identity`): the loop's settings that change the labels (config.identity_settings),
    the solver, and whether the labels started from the caller's rather than uniform."""
    settings = identity_settings(config)
    identity = {"distill": settings, "solver": solver.name}
    identity.update(solver.identity_settings())
    if given_start:
        identity["starting_labels"] = "given"
    if validation_checkpoints is not None:
        identity["validation_checkpoints"] = [int(c) for c in validation_checkpoints]
    return identity


def check_checkpoint_identity(directory: str, record: dict | None, identity: dict):
    if record is not None and record.get("identity") != identity:
        raise DistillError(
            f"the checkpoint in {directory} was written by a run with other settings "
            f"({record.get('identity')}); use another --model_dir or delete the checkpoint "
            f"to start afresh")
