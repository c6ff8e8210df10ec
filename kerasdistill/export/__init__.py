"""What leaves the tool: distilled sets on disk (TFDS records + JSON + npz) and pictures."""

from kerasdistill.export.distilled_set import DistilledSet, load_distilled, write_distilled_set

__all__ = ["DistilledSet", "load_distilled", "write_distilled_set"]
