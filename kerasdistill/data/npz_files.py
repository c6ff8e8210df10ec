"""Reading `.npz` files: the Keras layout (`x_train, y_train, x_test, y_test`, or the two
arrays of one split) and the one-array files some datasets ship (`arr_0`). Every way a
file can be broken ends in one DistillError naming the file."""

from __future__ import annotations

import zipfile

import numpy as np

from kerasdistill.errors import DistillError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SPLITS = ("train", "test")


def read_single_array(path: str) -> np.ndarray:
    """An official npz of one array (`arr_0`), checked like a Keras-layout file."""
    if not zipfile.is_zipfile(path):
        raise DistillError(f"{path} is not a readable .npz file (not a complete zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if npz.files != ["arr_0"]:
                raise DistillError(f"{path} holds the arrays {npz.files}; expected one array "
                                   f"arr_0, as the dataset's official files have")
            return npz["arr_0"]
    except DistillError:
        raise
    except Exception as error:  # noqa: BLE001 - as in read_npz
        raise DistillError(f"cannot read {path} as an .npz file (truncated or damaged?): "
                           f"{type(error).__name__}") from None


def read_npz(path: str) -> dict[str, np.ndarray]:
    """The Keras-layout arrays of one file (both splits, or one), as stored."""
    if not zipfile.is_zipfile(path):
        raise DistillError(f"{path} is not a readable .npz file (not a complete zip archive: "
                           f"truncated, or another kind of file); expected the Keras layout "
                           f"with arrays {list(NPZ_KEYS)}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in split_keys(path, npz.files)}
    except DistillError:
        raise
    except Exception as error:  # noqa: BLE001 - zip, zlib, lzma and numpy each raise their own
        # A truncated or damaged archive fails while an array is decompressed:
        # zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, ValueError, OSError...
        message = str(error).splitlines()[0] if str(error) else ""
        raise DistillError(f"cannot read {path} as an .npz file (truncated or damaged?): "
                           f"{type(error).__name__}: {message[:200]}") from None


def split_keys(path: str, names: list[str]) -> list[str]:
    """The Keras-layout arrays of a file that holds both splits or one of them (images
    and labels together); anything else is refused, naming what is missing."""
    present = [split for split in SPLITS if f"x_{split}" in names or f"y_{split}" in names]
    halves = [key for split in present for key in (f"x_{split}", f"y_{split}")
              if key not in names]
    if halves or not present:
        missing = halves or list(NPZ_KEYS)
        raise DistillError(
            f"{path} lacks the arrays {missing}; expected the Keras layout with arrays "
            f"{list(NPZ_KEYS)} (or the two of one split: x_train, y_train or x_test, y_test)")
    return [key for split in present for key in (f"x_{split}", f"y_{split}")]
