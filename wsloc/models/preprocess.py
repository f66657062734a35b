"""Image preprocessing for a classifier: resize the whole image, scale, normalise.

The localizer needs the map of the *whole* photo, so preprocessing resizes the full
frame to the network's input size (no centre crop; the aspect ratio is not kept).
:meth:`Preprocess.native` keeps it instead: the photo at a chosen longer side, both sides a
multiple of 32 (:func:`native_size`), for fully convolutional networks' maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import MethodError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_image(image) -> np.ndarray:
    """``image`` itself if it is a uint8 RGB array ``[H, W, 3]`` with H, W >= 1.

    Raises:
        MethodError: anything else (another type, dtype or number of dimensions, an empty image),
            saying what was given.
    """
    if not isinstance(image, np.ndarray):
        raise MethodError(f"expected a uint8 RGB image array [H, W, 3], got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MethodError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise MethodError(f"the image is empty ({image.shape[0]}x{image.shape[1]} pixels)")
    return image


def native_size(height: int, width: int, long_side: int, multiple: int = 32) -> tuple[int, int]:
    """(h, w) of a ``height x width`` photo resized so that its longer side is ``long_side``, at its own
    aspect ratio, both sides rounded to the nearest multiple of ``multiple`` (Python's ``round``, halves to
    even; at least one multiple): ``native_size(375, 500, 640) == (480, 640)``, ``native_size(375, 500, 448)
    == (320, 448)``. A network's stride-32 grid then covers the input exactly."""
    if min(height, width, long_side, multiple) < 1:
        raise MethodError(f"native_size: sizes must be positive, got {height}x{width}, long_side={long_side}, "
                          f"multiple={multiple}")
    s = long_side / max(height, width)
    return (max(multiple, round(height * s / multiple) * multiple),
            max(multiple, round(width * s / multiple) * multiple))


@dataclass(frozen=True)
class Preprocess:
    """uint8 RGB ``[H, W, 3]`` -> float32 ``[3, size[0], size[1]]`` normalised tensor.

    Attributes:
        size: (height, width) of the network input.
        mean, std: per-channel statistics for images scaled to [0, 1];
            the output is ``(image / 255 - mean) / std``.
    """

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Resize uint8 ``[H, W, 3]`` to ``[size[0], size[1], 3]`` (area when shrinking, bilinear when enlarging)."""
        h, w = self.size
        if image.shape[:2] == (h, w):
            return image
        shrinking = image.shape[0] * image.shape[1] > h * w
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """One image: uint8 ``[H, W, 3]`` RGB -> float32 ``[3, h, w]`` (MethodError for anything else)."""
        check_image(image)
        x = torch.from_numpy(np.ascontiguousarray(self.resize(image))).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return x.sub_(mean).div_(std)

    def native(self, image: np.ndarray, long_side: int, multiple: int = 32) -> torch.Tensor:
        """One image at its own aspect ratio: uint8 ``[H, W, 3]`` -> float32 ``[3, h, w]`` with
        ``(h, w) = native_size(H, W, long_side, multiple)``, resized from the image's own pixels as
        :meth:`resize` does (area when shrinking, bilinear when enlarging), normalised as :meth:`__call__`."""
        check_image(image)
        return dataclasses.replace(self, size=native_size(image.shape[0], image.shape[1], long_side, multiple))(image)

    def batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Several images -> float32 ``[N, 3, h, w]`` (MethodError for none at all)."""
        if len(images) == 0:
            raise MethodError("no images to preprocess (an empty list)")
        return torch.stack([self(im) for im in images])

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of the normalisation: ``[..., 3, h, w]`` -> values in [0, 1] (not clipped)."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(3, 1, 1)
        return x * std + mean
