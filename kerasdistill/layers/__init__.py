"""Custom Keras layers (keras-hub recipe: kwargs forwarded, weights in build, get_config)."""

from kerasdistill.layers.ridge import RidgeRegression, Scale, append_bias_column
from kerasdistill.layers.zca import ZCAWhitening

__all__ = ["RidgeRegression", "Scale", "ZCAWhitening", "append_bias_column"]
