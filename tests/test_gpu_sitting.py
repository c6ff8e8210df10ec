"""The prepared GPU sitting (benchmarks/gpu_sitting.py), run on this CPU at a tiny
scale: every part it takes on a device runs here, so a lent GPU adds only speed. The
figures it gives are timings for BENCHMARKS.md, not asserted here beyond being there."""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest

from tests.conftest import REPO_ROOT, write_fake_npz


def _sitting_module():
    # As when run as a script: its folder is on the import path (benchmarks/machine.py).
    sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "gpu_sitting", os.path.join(REPO_ROOT, "benchmarks", "gpu_sitting.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sitting = _sitting_module()


def _run_sitting(*args, timeout=900):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, os.path.join("benchmarks", "gpu_sitting.py"), *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _parts(summary):
    return {part["name"]: part for part in summary["parts"]}


@pytest.fixture(scope="module")
def tiny_sitting(tmp_path_factory):
    """One whole sitting at the tiny scale on this CPU, fake MNIST, no authors' code."""
    root = tmp_path_factory.mktemp("sitting")
    data_dir, out = root / "data", root / "out"
    data_dir.mkdir()
    write_fake_npz(str(data_dir / "mnist.npz"))
    result = _run_sitting(f"--output_dir={out}", f"--data_dir={data_dir}",
                          f"--authors_repo_dir={root / 'no_authors'}",
                          f"--work_dir={root / 'work'}", "--scale=tiny", "--allow_cpu",
                          "--total_seconds=1500")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return root, out, json.loads((out / sitting.SUMMARY_FILE).read_text())


def test_the_tiny_sitting_runs_every_tensorflow_part_and_records_its_figures(tiny_sitting):
    root, out, summary = tiny_sitting
    text = (out / sitting.SUMMARY_FILE).read_text()
    for path in (str(root), REPO_ROOT, sys.executable):  # committed summaries name none
        assert path not in text
    assert "--output_dir=$OUT" in text and "--data_dir=$DATA_DIR" in text
    parts = _parts(summary)
    assert list(parts) == ["probe", "meta_step_lenet", "authors_lenet", "meta_step_alexnet",
                           "authors_alexnet", "mnist_protocol", "cifar10_steps"]
    for name in ("probe", "meta_step_lenet", "meta_step_alexnet", "mnist_protocol",
                 "cifar10_steps"):
        assert parts[name]["status"] == "done", parts[name]
    assert summary["probe"]["tensorflow"]["importable"]
    lenet = parts["meta_step_lenet"]["result"]
    assert lenet["complete"] and lenet["step_device"] == "CPU:0"
    # Both algorithms, XLA off and on (the tiny scale drops the bf16 half of the grid).
    assert {(e["algorithm"], e["jit_compile"]) for e in lenet["configurations"]} == {
        ("second_order", False), ("second_order", True), ("ridge_regression", False),
        ("ridge_regression", True)}
    for entry in lenet["configurations"]:
        assert entry["ms_per_step_median"] > 0 and entry["first_step_seconds"] > 0
        assert entry["peak_memory_gib"] > 0
    # What --jit_compile=auto decides, per algorithm: on a CPU, off without a measurement.
    assert lenet["jit_compile_auto"]["second_order"]["how"].startswith("auto: off on CPUs")
    mnist = parts["mnist_protocol"]["result"]
    assert 0 <= mnist["test_accuracy_mean"] <= 1 and mnist["wall_times"]["meta_train_seconds"] > 0
    assert mnist["num_base_examples"] == 10 and mnist["device"]["cpu_count"] == os.cpu_count()
    cifar = parts["cifar10_steps"]["result"]
    assert cifar["ms_per_meta_step"] > 0 and cifar["data"].startswith("random images")
    assert summary["headline"]["lenet"]["kerasdistill_protocol_default_ms"] == next(
        e["ms_per_step_median"] for e in lenet["configurations"]
        if (e["algorithm"], e["jit_compile"], e["outer_precision"]) ==
        ("second_order", False, "float32"))


def test_the_tiny_sitting_says_why_it_skips_the_authors_step(tiny_sitting):
    _, _, summary = tiny_sitting
    parts = _parts(summary)
    for name in ("authors_lenet", "authors_alexnet"):
        assert parts[name]["status"] == "skipped"
        # CI has no torch; a machine with torch lacks the authors' code here.
        assert ("torch is not importable" in parts[name]["reason"]
                or "the authors' code is not in" in parts[name]["reason"]), parts[name]


def test_the_sitting_brings_back_few_flat_files_and_the_mnist_run_resumes(tiny_sitting,
                                                                          tmp_path):
    """The device tool returns at most 8 files, at most 2 folders down: the sitting
    writes 3 flat ones; the MNIST run folder travels as one tarball and a later
    sitting's --resume_mnist continues it."""
    root, out, summary = tiny_sitting
    assert sorted(os.listdir(out)) == sorted([sitting.SUMMARY_FILE, sitting.LOG_FILE,
                                              sitting.MNIST_TARBALL])
    with tarfile.open(out / sitting.MNIST_TARBALL) as archive:
        names = archive.getnames()
    assert f"{sitting.MNIST_RUN}/results.json" in names
    assert any(name.startswith(f"{sitting.MNIST_RUN}/checkpoint/ckpt-") for name in names)
    args = sitting.parse_args([f"--output_dir={tmp_path / 'out'}",
                               f"--data_dir={root / 'data'}", "--scale=tiny", "--allow_cpu",
                               f"--work_dir={tmp_path / 'work'}", "--total_seconds=600",
                               f"--resume_mnist={out / sitting.MNIST_TARBALL}"])
    again = sitting.Sitting(args)
    again.summary["probe"] = summary["probe"]
    again.mnist_protocol()
    part = again.parts["mnist_protocol"]
    assert part.status == "done", part
    resumed = json.loads((tmp_path / "work" / sitting.MNIST_RUN / "results.json").read_text())
    assert resumed["resumed_from_epoch"] == 1  # from the tarball's checkpoint, not anew


def test_without_tensorflow_or_torch_every_part_says_why_and_the_sitting_ends_well(tmp_path):
    """Today's device image has torch but no TensorFlow: the sitting must say so in
    its summary, not fail. An interpreter without site-packages stands in for it."""
    bare = tmp_path / "bare_python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    out = tmp_path / "out"
    result = _run_sitting(f"--output_dir={out}", f"--python={bare}", f"--torch_python={bare}",
                          f"--data_dir={tmp_path}", "--total_seconds=120", timeout=200)
    assert result.returncode == 0, result.stderr[-3000:]
    parts = _parts(json.loads((out / sitting.SUMMARY_FILE).read_text()))
    for name in ("meta_step_lenet", "meta_step_alexnet", "mnist_protocol", "cifar10_steps"):
        assert parts[name]["status"] == "skipped"
        assert "TensorFlow is not importable" in parts[name]["reason"]
        assert "No module named 'tensorflow'" in parts[name]["reason"]
    for name in ("authors_lenet", "authors_alexnet"):
        assert "No module named 'torch'" in parts[name]["reason"]
    assert not (out / sitting.MNIST_TARBALL).exists()


def test_tensorflow_without_a_gpu_is_skipped_unless_asked(tmp_path):
    """On a device where TensorFlow finds no GPU (a build for other CUDA libraries),
    the protocol would spend the device's minutes on its CPU: skipped, saying why."""
    args = sitting.parse_args([f"--output_dir={tmp_path}", f"--work_dir={tmp_path / 'work'}"])
    run = sitting.Sitting(args)
    run.log.close()
    run.summary["probe"] = {"tensorflow": {"importable": True, "version": "2.21.0",
                                           "gpus": [], "built_for_cuda": "12.5.1"}}
    assert "sees no GPU" in run.tensorflow_refusal()
    assert "12.5.1" in run.tensorflow_refusal()
    run.args.allow_cpu = True
    assert run.tensorflow_refusal() is None


def test_a_part_past_its_cap_is_stopped_with_its_children(tmp_path):
    marker = tmp_path / "child_alive"
    command = ["bash", "-c", f"(sleep 8; touch {marker}) & sleep 60"]
    with open(tmp_path / "log", "w") as log:
        start = time.monotonic()
        status, seconds, code = sitting.run_capped(command, 2, log)
    assert status == "capped" and code is None and time.monotonic() - start < 20
    time.sleep(8)
    assert not marker.exists()  # the whole process group went, not only bash
    with open(tmp_path / "log", "w") as log:
        assert sitting.run_capped(["bash", "-c", "exit 3"], 10, log)[::2] == ("failed", 3)


def test_the_cifar_timing_run_takes_the_epochs_that_fit():
    sweep = {"jit_compile_auto": {"second_order": {"jit_compile": True}},
             "configurations": [
                 {"algorithm": "second_order", "jit_compile": False,
                  "outer_precision": "float32", "ms_per_step_median": 50.0},
                 {"algorithm": "second_order", "jit_compile": True,
                  "outer_precision": "float32", "ms_per_step_median": 25.0}]}
    assert sitting.protocol_step_ms(sweep) == 25.0  # as --jit_compile=auto decided
    assert sitting.protocol_step_ms(None) is None
    # Half of 100 s at 44 steps (45,000 images in batches of 1,024) of 25 ms per epoch:
    # 45 epochs; at least one.
    assert sitting.CIFAR10_STEPS_PER_EPOCH == 44
    assert sitting.cifar_epochs(25.0, 100) == 45
    assert sitting.cifar_epochs(10_000.0, 100) == 1 and sitting.cifar_epochs(None, 100) == 1


def test_the_preflight_says_whether_the_call_can_travel(tmp_path):
    """The device tool refuses a tree over 64 MiB: say so here, at no device time."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist.npz").write_bytes(b"\0" * 3 * 2 ** 20)
    sizes = sitting.transfer_sizes(carry=(str(tmp_path),))
    assert sizes["carried_bytes"][str(tmp_path)] == 3 * 2 ** 20
    assert sizes["tree_bytes"] > os.path.getsize(os.path.join(REPO_ROOT, "README.md"))
    fits, words = sitting.preflight(limit_mib=sizes["total_mib"] - 1, carry=(str(tmp_path),))
    assert not fits and words.startswith("does NOT fit") and "3.0 MiB" in words
    assert sitting.preflight(limit_mib=sizes["total_mib"] + 1, carry=(str(tmp_path),))[0]


def test_committed_summaries_name_no_folder_of_the_machine(tmp_path):
    """Placeholders replace whole path components only."""
    path = tmp_path / "s.json"
    sitting.write_json_atomic(str(path), {"a": "/work/main/x /work/main_old/y /work/main"},
                              {"/work/main": ".", "python3": "python"})
    assert json.loads(path.read_text())["a"] == "./x /work/main_old/y ."


AUTHORS = "/work/authors_label_distillation"


@pytest.mark.skipif(not os.path.exists(os.path.join(AUTHORS, "label_distillation_or2.py")),
                    reason=f"the authors' code is not at {AUTHORS} (benchmarks/README.md)")
def test_the_authors_alexnet_step_on_the_device_torch_picks_equals_their_train(tmp_path):
    """The sitting's authors' parts, where torch and their code are here."""
    torch_python = os.environ.get("KERASDISTILL_TORCH_PYTHON", "/work/torch_venv/bin/python")
    if not os.path.exists(torch_python):
        pytest.skip(f"no torch interpreter at {torch_python} ($KERASDISTILL_TORCH_PYTHON)")
    out = tmp_path / "authors.json"
    done = subprocess.run([torch_python, os.path.join("benchmarks", "authors_pytorch_step.py"),
                           f"--repo_dir={AUTHORS}", "--architecture=alexnet", "--device=auto",
                           "--check_equivalence", "--warmup=1", "--steps=2", "--outer_batch=16",
                           f"--output_json={out}"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["architecture"] == "alexnet" and figures["shapes"]["image"] == [3, 32, 32]
    assert figures["equivalence"]["max_abs_diff_labels"] == 0.0
    assert figures["equivalence"]["labels_moved_from_uniform"] > 0
    assert figures["ms_per_step_median"] > 0
