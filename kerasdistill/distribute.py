"""Which devices the outer loop runs on: one (the default), all of this machine's
GPUs (`mirrored`), or several machines (`multi_worker`, from TF_CONFIG)."""

from __future__ import annotations

import functools
import logging
import os

from kerasdistill.config import DISTRIBUTIONS
from kerasdistill.errors import DistillError, require_one_of


@functools.lru_cache(maxsize=None)
def make_strategy(name: str):
    """The tf.distribute strategy for `name` (None for "none"), one per process:
    TensorFlow configures the collective ops of a multi-worker strategy once, before
    it runs anything, so entry points call this first and the loop gets the same one.

    mirrored: `MirroredStrategy` over the visible GPUs, or over the logical CPU
    devices when there is no GPU (the tests make two); multi_worker:
    `MultiWorkerMirroredStrategy`, whose cluster comes from the TF_CONFIG variable.
    """
    require_one_of("distribute", name, DISTRIBUTIONS)
    if name == "none":
        return None
    import tensorflow as tf
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise DistillError("--distribute=multi_worker needs the TF_CONFIG environment "
                               "variable describing the cluster and this worker's task")
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
        d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) == 1:
        logging.getLogger("kerasdistill").warning(
            "--distribute=mirrored found one device (%s): the run is not spread", devices[0])
    return tf.distribute.MirroredStrategy(devices)
