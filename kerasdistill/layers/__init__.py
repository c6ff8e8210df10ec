"""Custom Keras layers (keras-hub recipe: kwargs forwarded, weights in build, get_config)."""

from kerasdistill.layers.ridge import RidgeRegression, Scale, append_bias_column

__all__ = ["RidgeRegression", "Scale", "append_bias_column"]
