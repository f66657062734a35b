"""Image and dataset input for wsloc.

* :func:`load_image` / :func:`image_size`: any image file -> ``uint8 [H, W, 3]`` RGB.
* :class:`CocoDataset`, :class:`VocDataset`, :class:`FolderDataset`,
  :func:`open_dataset`: annotation readers yielding :class:`Sample` objects with
  ``float64 [M, 4]`` xyxy continuous pixel boxes.
"""

from wsloc.io.datasets import (
    IMAGE_EXTENSIONS,
    CocoDataset,
    FolderDataset,
    Sample,
    VocDataset,
)
from wsloc.io.open import open_dataset
from wsloc.io.images import DEFAULT_MAX_PIXELS, image_size, load_image

__all__ = [
    "load_image",
    "image_size",
    "DEFAULT_MAX_PIXELS",
    "Sample",
    "CocoDataset",
    "VocDataset",
    "FolderDataset",
    "open_dataset",
    "IMAGE_EXTENSIONS",
]
