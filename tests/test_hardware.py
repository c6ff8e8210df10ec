"""The outer-precision choice that depends on the machine."""

import pytest
import tensorflow as tf

from kerasdistill import hardware
from kerasdistill.distill.loop import DistillConfig
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.errors import DistillError
from kerasdistill.experiment import ExperimentConfig, resolve
from kerasdistill.models import ModelFactory


@pytest.mark.parametrize("has_bf16, gpus, expected", [
    (True, [], "mixed_conv_bfloat16"),
    (False, [], "float32"),
    (True, ["GPU:0"], "float32"),   # not measured on a GPU yet: stay exact there
])
def test_auto_picks_bfloat16_only_on_a_bf16_cpu(monkeypatch, has_bf16, gpus, expected):
    monkeypatch.setattr(hardware, "cpu_has_fast_bfloat16", lambda: has_bf16)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
    assert hardware.resolve_outer_precision("auto") == expected


@pytest.mark.parametrize("explicit", ["float32", "mixed_conv_bfloat16"])
def test_explicit_precision_is_kept(monkeypatch, explicit):
    monkeypatch.setattr(hardware, "cpu_has_fast_bfloat16", lambda: False)
    assert hardware.resolve_outer_precision(explicit) == explicit


def test_config_records_the_resolved_precision(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_fast_bfloat16", lambda: True)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    config = ExperimentConfig(distill=DistillConfig(num_base_examples=10, inner_batch_size=10),
                              outer_precision="auto")
    assert resolve(config).outer_precision == "mixed_conv_bfloat16"


def test_solver_accepts_auto(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_fast_bfloat16", lambda: False)
    solver = UnrolledSGDSolver(ModelFactory("lenet", (28, 28, 1), 10), outer_precision="auto")
    assert solver.outer_precision == "float32"


def test_unknown_precision_is_refused():
    with pytest.raises(DistillError, match="outer_precision must be one of"):
        ExperimentConfig(distill=DistillConfig(num_base_examples=10, inner_batch_size=10),
                         outer_precision="bfloat8")


# --- oneDNN on by default (issue 8, item 1) --------------------------------------------

_X86 = __import__("platform").machine().lower() in ("x86_64", "amd64")


def _python(code, **env_changes):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update({"PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "3", **env_changes})
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.skipif(not _X86, reason="oneDNN is switched on only on x86 CPUs")
def test_importing_kerasdistill_turns_onednn_on_unless_the_user_chose():
    show = "import os, kerasdistill; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    assert _python(show).stdout.strip() == "1"
    assert _python(show, TF_ENABLE_ONEDNN_OPTS="0").stdout.strip() == "0"


@pytest.mark.skipif(not _X86, reason="oneDNN is switched on only on x86 CPUs")
def test_tensorflow_imported_first_is_left_alone_with_a_warning_where_it_matters():
    result = _python("import os, tensorflow, kerasdistill; "
                     "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))")
    assert result.stdout.strip() == "None"  # too late to change; not pretended otherwise
    warned = "imported before kerasdistill, with oneDNN off" in result.stderr
    assert warned == ("avx512f" not in hardware._cpu_flags())


_FIVE_META_STEPS = """
import json, numpy as np, tensorflow as tf
from kerasdistill.distill.meta_step import init_meta_state, make_meta_step, uniform_labels
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.models import ModelFactory
rng = np.random.default_rng(0)
solver = UnrolledSGDSolver(ModelFactory("lenet", (28, 28, 1), 10), outer_precision="float32")
state = init_meta_state(solver, uniform_labels(20, 10), seed=3)
step = make_meta_step(solver, label_learning_rate=0.01)
base = tf.constant(rng.normal(size=(20, 28, 28, 1)), tf.float32)
for t in range(5):
    outer = tf.constant(rng.normal(size=(128, 28, 28, 1)), tf.float32)
    labels = tf.constant(rng.integers(0, 10, 128), tf.int32)
    state, _ = step(state, base, tf.constant(rng.permutation(20)[:10], tf.int32), outer, labels)
print(json.dumps(state.soft_labels.numpy().tolist()))
"""


def test_onednn_on_and_off_agree_within_float_tolerance():
    """oneDNN changes the order of float32 sums, not the result beyond rounding."""
    import json

    import numpy as np
    on = np.asarray(json.loads(_python(_FIVE_META_STEPS, TF_ENABLE_ONEDNN_OPTS="1").stdout))
    off = np.asarray(json.loads(_python(_FIVE_META_STEPS, TF_ENABLE_ONEDNN_OPTS="0").stdout))
    assert not np.allclose(on, 0.1)  # the labels moved
    np.testing.assert_allclose(on, off, atol=2e-5)
