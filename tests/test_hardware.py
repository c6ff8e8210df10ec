"""The outer-precision choice that depends on the machine."""

import pytest
import tensorflow as tf

from kerasdistill import hardware
from kerasdistill.distill.second_order import UnrolledSGDSolver
from kerasdistill.errors import DistillError
from kerasdistill.experiment import ExperimentConfig
from kerasdistill.distill.loop import DistillConfig
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
    assert config.resolved().outer_precision == "mixed_conv_bfloat16"


def test_solver_accepts_auto(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_fast_bfloat16", lambda: False)
    solver = UnrolledSGDSolver(ModelFactory("lenet", (28, 28, 1), 10), outer_precision="auto")
    assert solver.outer_precision == "float32"


def test_unknown_precision_is_refused():
    config = ExperimentConfig(distill=DistillConfig(num_base_examples=10, inner_batch_size=10),
                              outer_precision="bfloat8")
    with pytest.raises(DistillError, match="outer_precision must be one of"):
        config.check()
