"""Datasets: registry, loading (npz or TFDS), splits, base examples, the target stream."""
