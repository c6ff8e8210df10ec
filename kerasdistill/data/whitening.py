"""ZCA whitening of a run's images (issue 13, item 3: an evaluation recipe).

Dataset-distillation work since KIP (Nguyen et al. 2021) whitens images before any
model sees them: every image, flattened, is centred and multiplied by

    W = U diag(1 / sqrt(lambda + regularization * mean(lambda))) U^T

where U, lambda are the eigenvectors and eigenvalues of the training images'
covariance. W is symmetric, so it decorrelates the pixels while staying as close to
the images as a whitening can (the "zero-phase" of ZCA); the regularization, relative
to the mean eigenvalue, keeps the near-empty directions (MNIST's blank border) from
being blown up into noise. KIP's strength is 0.1.

With `--whitening=zca` a run fits W on its target's training split (after the
per-channel normalisation, and never on validation or test images) and whitens every
image its models see: the splits and the base images, whatever dataset they come
from. The images are fixed and only the labels are learned, so whitening happens once,
here, and the meta loop never sees it. The distilled set stores the mean and W
(`DistilledSet.whitening_layer()` gives them back as a Keras layer, `layers/zca.py`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kerasdistill.config import DEFAULT_ZCA_REGULARIZATION
from kerasdistill.errors import DistillError

_APPLY_CHUNK = 8192  # images per matmul when whitening a whole split


def check_zca_regularization(regularization) -> float:
    """The strength as a float; DistillError unless it is a finite positive number."""
    if isinstance(regularization, bool) or not isinstance(
            regularization, (int, float, np.floating, np.integer)) \
            or not np.isfinite(regularization) or regularization <= 0:
        raise DistillError(f"zca_regularization must be a finite positive number (relative to "
                           f"the mean eigenvalue of the images' covariance), got "
                           f"{regularization!r}")
    return float(regularization)


@dataclasses.dataclass(frozen=True, eq=False)
class ZCAStatistics:
    """A fitted ZCA whitening: the training images' mean [d] and W [d, d] (float32).

    Example:
        zca = ZCAStatistics.fit(target.train_images, regularization=0.1)
        whitened_test = zca(target.test_images)  # same shape, float32
    """

    mean: np.ndarray
    matrix: np.ndarray
    regularization: float = DEFAULT_ZCA_REGULARIZATION

    def __post_init__(self):
        check_zca_regularization(self.regularization)
        mean, matrix = np.asarray(self.mean), np.asarray(self.matrix)
        if mean.ndim != 1 or matrix.shape != (len(mean), len(mean)):
            raise DistillError(f"ZCA statistics need a mean [d] and a matrix [d, d], got "
                               f"{mean.shape} and {matrix.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(matrix))):
            raise DistillError("ZCA statistics hold NaN or infinity")

    @classmethod
    def fit(cls, images, regularization: float = DEFAULT_ZCA_REGULARIZATION
            ) -> "ZCAStatistics":
        """Fits on `images` (N x ...). In float64: a 784- or 3072-dimensional
        covariance summed over tens of thousands of images loses its small
        eigenvalues in float32."""
        regularization = check_zca_regularization(regularization)
        images = np.asarray(images)
        if images.ndim < 2 or len(images) < 2:
            raise DistillError(f"ZCA whitening is fitted on at least 2 images, got an array "
                               f"of shape {images.shape}")
        flat = images.reshape(len(images), -1).astype(np.float64)
        if not np.all(np.isfinite(flat)):
            raise DistillError("ZCA whitening cannot be fitted on images holding NaN or "
                               "infinity")
        mean = flat.mean(axis=0)
        centred = flat - mean
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(flat))
        eigenvalues = np.maximum(eigenvalues, 0.0)  # eigh's rounding can dip below 0
        floor = regularization * eigenvalues.mean()
        if floor <= 0:
            raise DistillError("ZCA whitening cannot be fitted on identical images (their "
                               "covariance is zero)")
        matrix = (eigenvectors / np.sqrt(eigenvalues + floor)) @ eigenvectors.T
        return cls(mean.astype(np.float32), matrix.astype(np.float32), regularization)

    @property
    def size(self) -> int:
        return len(self.mean)

    def fingerprint(self) -> dict:
        """A few numbers that name this whitening in a run's results.json, so that one
        fitted again (an export) can be checked against the run's own."""
        return {"regularization": self.regularization,
                "mean_norm": float(np.linalg.norm(self.mean.astype(np.float64))),
                "matrix_trace": float(np.trace(self.matrix.astype(np.float64))),
                "matrix_norm": float(np.linalg.norm(self.matrix.astype(np.float64)))}

    def check_fingerprint(self, recorded: dict, where: str):
        """DistillError unless this whitening's fingerprint is `recorded` to within float32
        rounding (an eigendecomposition on another BLAS differs in its last bits)."""
        mine = self.fingerprint()
        differing = [key for key, value in recorded.items()
                     if not np.isclose(mine.get(key, np.nan), value, rtol=1e-4, atol=0)]
        if differing:
            details = ", ".join(f"{key} {mine.get(key)} against {recorded[key]}"
                                for key in differing)
            raise DistillError(f"{where}: the whitening fitted now differs from the run's "
                               f"({details}); point --data_dir at the data the run used")

    def __call__(self, images) -> np.ndarray:
        """`images` (N x ...) whitened, float32, the same shape; a chunk at a time (a
        split's images times a d x d matrix would otherwise double its memory)."""
        images = np.asarray(images, np.float32)
        flat = images.reshape(len(images), -1)
        if flat.shape[1] != self.size:
            raise DistillError(f"these ZCA statistics whiten images of {self.size} values, "
                               f"got images of shape {images.shape[1:]}")
        out = np.empty_like(flat)
        for start in range(0, len(flat), _APPLY_CHUNK):
            out[start:start + _APPLY_CHUNK] = (flat[start:start + _APPLY_CHUNK]
                                               - self.mean) @ self.matrix
        return out.reshape(images.shape)


def fit_run_whitening(whitening: str, regularization: float,
                      train_images: np.ndarray) -> "ZCAStatistics | None":
    """A run's whitening (WHITENINGS), fitted on its training split only (never on
    validation or test images); None for "none"."""
    if whitening == "none":
        return None
    return ZCAStatistics.fit(train_images, regularization)
