"""What the protocol needs to know about a dataset: `DatasetSpec`, the bottom of the data
layer (the registry and a user's files both make them)."""

from __future__ import annotations

import dataclasses

# docs/method.md section 3: one normalisation for every greyscale target, one for every colour
# target.
GREYSCALE_MEAN = (0.1307,)
GREYSCALE_STD = (0.3081,)
COLOUR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
COLOUR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the protocol needs to know about one dataset.

    Attributes:
      name: our name, also the stem of the local file `<name>.npz`.
      tfds_name: the tensorflow-datasets builder name.
      image_shape: (height, width, channels) after loading.
      num_classes: number of classes the labels use.
      num_validation: examples held out of the official train split for validation.
      label_offset: subtracted from the stored labels (EMNIST letters count from 1).
      stored_transposed: the dataset's files (and TFDS, and torchvision, which the
        authors' code loads) hold the images transposed relative to upright (EMNIST).
        Runs see them as stored by default, as the paper's runs did
        (`orientation="upright"` transposes them back).
      url: where users obtain the data by hand, for error messages.
      class_names: a name per class, in label order (empty: the class numbers).
      official_files: the dataset's own file layout in --data_dir, read when
        `<name>.npz` is absent: {"x_train": file, "y_train": ..., "x_test": ...,
        "y_test": ...}, each an npz holding one array `arr_0` (Kuzushiji-49's layout).
      resize_on_load: images come in varying sizes (CUB) and are resized to
        `image_shape` as they load (bilinear, antialiased).
      normalization: (mean, std) per channel, of pixels / 255, where the dataset brings
        its own (a user's data: computed from its training split); None: the protocol's
        one normalisation for greyscale and one for colour (docs/method.md section 3).
      local_path: a user's dataset: the file or folder it is read from (data/user_data.py);
        None for the registered datasets.
      fingerprint: a user's dataset: a SHA-256 of its arrays, so results name the data.
    """

    name: str
    tfds_name: str | None               # None: not in tensorflow-datasets
    image_shape: tuple[int, int, int]
    num_classes: int
    num_validation: int
    label_offset: int = 0
    stored_transposed: bool = False
    url: str = ""
    class_names: tuple[str, ...] = ()
    official_files: tuple[tuple[str, str], ...] = ()
    resize_on_load: bool = False
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    local_path: str | None = None
    fingerprint: str | None = None

    def class_name_list(self) -> list[str]:
        """Names for every class: the registered ones, or the class numbers."""
        return list(self.class_names) or [str(c) for c in range(self.num_classes)]

    @property
    def mean(self) -> tuple[float, ...]:
        if self.normalization:
            return self.normalization[0]
        return GREYSCALE_MEAN if self.image_shape[-1] == 1 else COLOUR_MEAN

    @property
    def std(self) -> tuple[float, ...]:
        if self.normalization:
            return self.normalization[1]
        return GREYSCALE_STD if self.image_shape[-1] == 1 else COLOUR_STD
