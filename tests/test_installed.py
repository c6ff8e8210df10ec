"""An installed kerasdistill is a whole tool: its imports are its declared dependencies,
the wheel holds every module and the ready sets, and the commands run outside the checkout;
and a command's first screen is the project's, not TensorFlow's start-up lines."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv

import pytest

from tests.conftest import REPO_ROOT

# Import names whose distribution is named otherwise.
DISTRIBUTION_OF = {"absl": "absl-py", "tensorflow_datasets": "tensorflow-datasets",
                   "tensorflow_probability": "tensorflow-probability", "PIL": "pillow",
                   "yaml": "pyyaml", "sklearn": "scikit-learn"}
# Imported only inside the functions that need them, and declared as an extra.
OPTIONAL_IMPORTS = {"pyarrow": ("hf", "kerasdistill/export/hf_format.py")}


def _pyproject() -> dict:
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


def _third_party_imports():
    """{(top-level module, file)} of every import in the package and the commands."""
    found = set()
    for folder in ("kerasdistill", "experiments"):
        for root, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                with open(path) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and not node.level:
                        modules = [node.module]
                    else:
                        continue
                    for module in modules:
                        top = module.split(".")[0]
                        if top not in sys.stdlib_module_names and top not in (
                                "kerasdistill", "experiments", "__future__"):
                            found.add((top, os.path.relpath(path, REPO_ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    """Would have caught scipy: imported by evaluation/label_baselines.py, pinned in
    requirements.txt, missing from pyproject.toml's dependencies."""
    project = _pyproject()["project"]
    required = {_distribution(r) for r in project["dependencies"]}
    extras = {extra: {_distribution(r) for r in requirements}
              for extra, requirements in project["optional-dependencies"].items()}
    with open(os.path.join(REPO_ROOT, "requirements.txt")) as f:
        pinned = {_distribution(line) for line in f
                  if line.strip() and not line.startswith("#")}
    for module, path in sorted(_third_party_imports()):
        distribution = DISTRIBUTION_OF.get(module, module).lower()
        if module in OPTIONAL_IMPORTS:
            extra, where = OPTIONAL_IMPORTS[module]
            assert distribution in extras[extra] and path == where, (module, path)
        else:
            assert distribution in required, f"{path} imports {module}: add " \
                                              f"{distribution} to pyproject's dependencies"
    # What the library needs is what the pinned file installs (CI and the figures).
    assert required <= pinned, required - pinned


def _check(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    return result


def _installed(base):
    """A fresh virtual environment with the wheel of this checkout installed (its
    dependencies from this interpreter's packages: no downloads), used from a folder
    outside the checkout. The wheel is built from a copy of what it packages, so that no
    build folder is left in the checkout and nothing left there gets into the wheel."""
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO_ROOT, name), source / name)
    for folder in ("kerasdistill", "experiments"):
        shutil.copytree(os.path.join(REPO_ROOT, folder), source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--quiet", "-w", str(base / "wheel"), str(source)])
    wheels = os.listdir(base / "wheel")
    assert len(wheels) == 1 and wheels[0].startswith("kerasdistill-"), wheels
    venv.create(base / "env", system_site_packages=True, with_pip=True)
    python = str(base / "env" / "bin" / "python")
    _check([python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
            str(base / "wheel" / wheels[0])])
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.makedirs(base / "elsewhere")
    return {"python": python, "bin": str(base / "env" / "bin"), "env": env,
            "cwd": str(base / "elsewhere")}


def test_the_installed_wheel_is_a_whole_tool(tmp_path):
    """One environment (building it takes most of the time), two checks below."""
    installed = _installed(tmp_path)
    _every_module_imports(installed)
    _the_commands_run_and_find_the_ready_sets(installed)


def _every_module_imports(installed):
    """Every library module in one process; each command module in its own (each defines
    its flags on absl's global FLAGS, as `python -m` loads one)."""
    run = {"cwd": installed["cwd"], "env": installed["env"]}
    script = (
        "import importlib, json, pkgutil, kerasdistill\n"
        "names = [m.name for m in pkgutil.walk_packages(kerasdistill.__path__, "
        "'kerasdistill.')]\n"
        "library = [n for n in names if not n.startswith('kerasdistill.experiments.')]\n"
        "for name in library: importlib.import_module(name)\n"
        "print(json.dumps([kerasdistill.__file__, names]))\n")
    location, names = json.loads(_check([installed["python"], "-c", script],
                                        **run).stdout.splitlines()[-1])
    assert location.startswith(os.path.dirname(installed["bin"]))  # not the checkout's
    commands = [name for name in names if name.startswith("kerasdistill.experiments.")]
    assert len(names) >= 60 and {f"kerasdistill.experiments.{command}" for command in (
        "distill", "train", "export", "reproduce", "sets", "flags")} <= set(commands)
    for command in commands:
        _check([installed["python"], "-c", f"import {command}"], **run)
    versions = _check([installed["python"], "-c", "import importlib.metadata as m, "
                       "kerasdistill; print(m.version('kerasdistill'), kerasdistill.__version__)"],
                      **run).stdout.split()
    assert versions[0] == versions[1]  # pyproject reads version.py: written once


def _the_commands_run_and_find_the_ready_sets(installed):
    listing = _check([os.path.join(installed["bin"], "kerasdistill"), "sets"],
                     cwd=installed["cwd"], env=installed["env"])
    assert "| mnist/n100/horizon | mnist | 100 |" in listing.stdout
    shown = _check([installed["python"], "-m", "kerasdistill.experiments.sets",
                    "--name=mnist/n100/ld"], cwd=installed["cwd"], env=installed["env"])
    assert "the paper's budget" in shown.stdout
    loaded = _check([installed["python"], "-c", "import kerasdistill; d = kerasdistill."
                     "load_distilled('mnist/n10/ld'); print(len(d), d.num_train_steps)"],
                    cwd=installed["cwd"], env=installed["env"])
    assert loaded.stdout.split()[0] == "10"
    for command, flag in (("distill", "--model_dir"), ("train", "--distilled"),
                          ("export", "--format"), ("reproduce", "--experiment")):
        helped = subprocess.run([os.path.join(installed["bin"], "kerasdistill"), command,
                                 "--helpshort"], capture_output=True, text=True,
                                cwd=installed["cwd"], env=installed["env"])
        # absl's --helpshort lists the command's own flags (and exits with status 1).
        assert f"USAGE: kerasdistill {command}" in helped.stdout and flag in helped.stdout
    unknown = subprocess.run([os.path.join(installed["bin"], "kerasdistill"), "distil"],
                             capture_output=True, text=True, cwd=installed["cwd"])
    assert unknown.returncode == 2 and "unknown command 'distil'" in unknown.stderr
    helped = subprocess.run([os.path.join(installed["bin"], "kerasdistill"), "--help"],
                            capture_output=True, text=True, cwd=installed["cwd"])
    assert helped.returncode == 0 and "COMMAND one of distill, train" in helped.stdout


def test_tensorflows_start_up_lines_are_hidden_and_other_lines_kept(capfd, monkeypatch):
    from experiments import quiet_tensorflow_start_up
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with quiet_tensorflow_start_up():
        os.write(2, b"I0000 00:00:1 12 port.cc:153] oneDNN custom operations are on. ...\n"
                    b"I0000 00:00:1 12 cpu_feature_guard.cc:227] This TensorFlow binary\n"
                    b"To enable the following instructions: AVX2 FMA, in other operations\n"
                    b"a real problem\n")
    assert capfd.readouterr().err == "a real problem\n"


def test_a_command_starts_with_its_own_lines(fake_data_dir, tmp_path):
    """A whole (tiny) run without TF_CPP_MIN_LOG_LEVEL: the budget line comes first, and
    none of TensorFlow's start-up lines or C++ INFO lines appears anywhere."""
    from experiments import _START_UP_LINES
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO_ROOT
    result = subprocess.run(
        [sys.executable, "-m", "experiments.distill", "--num_base_examples=10",
         "--inner_batch_size=5", "--outer_batch_size=64", "--epochs=1",
         "--test_repetitions=1", "--num_validation=100", f"--data_dir={fake_data_dir}",
         f"--model_dir={tmp_path}/run"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Budget: "), lines[:5]
    assert not [line for line in lines if _START_UP_LINES.search(line)]
    assert not [line for line in lines if line.startswith("I0000")]  # TensorFlow's INFO
