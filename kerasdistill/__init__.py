"""kerasdistill: label distillation (Bohdal, Yang, Hospedales 2020) in TensorFlow/Keras.

    import kerasdistill
    distilled = kerasdistill.load_distilled("runs/mnist_n100_ld/distilled_set")
    model.fit(distilled.as_dataset(distilled.inner_batch_size, repeat=True),
              steps_per_epoch=distilled.num_train_steps)
"""

from kerasdistill.hardware import enable_onednn_by_default

# Before anything imports TensorFlow: oneDNN on for x86 CPUs (TensorFlow leaves it off
# on those without AVX-512, ~3x slower convolutions), unless the user set it.
enable_onednn_by_default()

from kerasdistill.version import __version__  # noqa: E402

__all__ = ["DistilledSet", "load_distilled"]


def __getattr__(name):
    # Lazy, so that entry points can read flags' choices from submodules
    # without importing TensorFlow first (keeps --help instant).
    if name in __all__:
        from kerasdistill.export import distilled_set
        return getattr(distilled_set, name)
    raise AttributeError(f"module 'kerasdistill' has no attribute {name!r}")
