"""kerasdistill: label distillation (Bohdal, Yang, Hospedales 2020) in TensorFlow/Keras."""

__version__ = "0.1.0"
