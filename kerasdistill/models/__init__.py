"""Model architectures, behind a registry (importing this package registers them)."""

from kerasdistill.models import alexnet, convnet, lenet, resnet  # noqa: F401  (register themselves)
from kerasdistill.models.registry import ModelFactory, architecture_names, build_model

__all__ = ["ModelFactory", "architecture_names", "build_model"]
