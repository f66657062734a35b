"""Saliency maps at the working resolution and the seed pixels of the two colour models."""

from __future__ import annotations

import cv2
import numpy as np

from ..normalize import normalize_maps

_INTERPOLATION = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST,
                  "bicubic": cv2.INTER_CUBIC}


def working_shape(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) of the working grid: the image's own size, shrunk to a longer side of ``max_side``."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def working_image(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """uint8 ``[H, W, 3]`` image -> the copy segmentation works on: shrunk (area) to
    :func:`working_shape`, or the image itself when it is small enough. The batch runner sends
    this copy and the size ``(H, W)`` to its segmentation processes (:func:`wsloc.segment.segment`'s
    ``size``), the same pixels segmentation would make."""
    height, width = image.shape[:2]
    shape = working_shape(height, width, max_side)
    if shape == (height, width):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).reshape(*shape, 3)


def clean_map(saliency: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """Replace non-finite entries (NaN, +-inf) by the smallest finite value ("least salient").

    Args:
        saliency: float ``[h, w]``.

    Returns:
        (float32 ``[h, w]`` map, or None when no entry is finite; whether any entry was replaced).
    """
    s = np.asarray(saliency, dtype=np.float32)
    finite = np.isfinite(s)
    if finite.all():
        return s, False
    if not finite.any():
        return None, True
    return np.where(finite, s, s[finite].min()).astype(np.float32), True


def resize_map(saliency: np.ndarray, shape: tuple[int, int], method: str = "auto", blur: float = 0.0) -> np.ndarray:
    """float32 ``[h, w]`` finite map -> float32 ``shape`` map.

    ``method``: "area", "bilinear", "nearest", "bicubic", or "auto" (area when shrinking,
    bilinear when enlarging). ``blur``: Gaussian sigma in output pixels (0: none).
    Bicubic overshoot is clipped to the input's range.
    """
    h, w = shape
    s = np.ascontiguousarray(saliency, dtype=np.float32)
    if s.shape != (h, w):
        if method == "auto":
            method = "area" if s.shape[0] * s.shape[1] >= h * w else "bilinear"
        out = cv2.resize(s, (w, h), interpolation=_INTERPOLATION[method])
        if method == "bicubic":
            out = np.clip(out, s.min(), s.max())
        s = out.reshape(h, w)
    if blur > 0:
        s = cv2.GaussianBlur(s, (0, 0), sigmaX=blur, sigmaY=blur, borderType=cv2.BORDER_REPLICATE).reshape(h, w)
    return s


def seed_masks(saliency: np.ndarray, q_fg: float = 95.0, q_bg: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background seeds of a map (Simonyan et al.: above the 95th, below the 30th percentile).

    Foreground: pixels strictly above the ``q_fg`` percentile; if there are none (ties at
    the maximum), the pixels equal to it. Background: strictly below the ``q_bg``
    percentile; if none (ties at the minimum, e.g. a map that is 0 over most of the
    image), the pixels equal to it. For a map that is not constant the two sets are
    disjoint and non-empty.

    Returns:
        (fg, bg) bool masks of the map's shape.
    """
    t_bg, t_fg = np.percentile(saliency, [q_bg, q_fg])
    fg = saliency > t_fg
    if not fg.any():
        fg = saliency >= t_fg
    bg = saliency < t_bg
    if not bg.any():
        bg = saliency <= t_bg
    return fg, bg & ~fg


def relative_map(saliency: np.ndarray) -> np.ndarray:
    """A finite, non-constant map as fractions of its maximum, in ``[0, 1]``.

    Negative values are clipped to 0 and the rest divided by the maximum (CAM-style
    normalisation, :func:`wsloc.normalize.normalize_maps` rule ``"peak"``); a map with no
    positive value is min-max normalised instead (rule ``"minmax"``).

    Returns:
        float32 map of the same shape.
    """
    s = np.asarray(saliency, dtype=np.float32)
    return normalize_maps(s, "peak" if float(s.max()) > 0 else "minmax")


def fraction_seeds(saliency: np.ndarray, f_fg: float, f_bg: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeds by fractions of the map's maximum (:func:`relative_map`): foreground where the
    map is at least ``f_fg`` of it, background where it is at most ``f_bg`` (``f_bg < f_fg``,
    both in ``[0, 1]``).

    Unlike percentile seeds, their areas follow the map: a small object's map gives few
    foreground seeds, a large one's many.

    Returns:
        (fg, bg) disjoint bool masks of the map's shape.
    """
    r = relative_map(saliency)
    fg = r >= f_fg
    return fg, (r <= f_bg) & ~fg


def map_prior(saliency: np.ndarray, weight: float, clip: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """The map as a unary prior: (extra cost of foreground, extra cost of background), float64 maps.

    With ``r`` = :func:`relative_map` clipped to ``[clip, 1 - clip]``: ``-weight * log r`` and
    ``-weight * log(1 - r)``, so a pixel at half the maximum is neutral, one near the maximum
    leans to the foreground and one near zero to the background.
    """
    r = np.clip(relative_map(saliency).astype(np.float64), clip, 1.0 - clip)
    return -weight * np.log(r), -weight * np.log1p(-r)


def threshold_mask(saliency: np.ndarray, fraction: float) -> np.ndarray:
    """The pixels whose value is at least ``fraction`` of the map's maximum (:func:`relative_map`).

    Returns:
        bool mask of the map's shape (never empty for a non-constant map and ``fraction <= 1``).
    """
    return relative_map(saliency) >= fraction
