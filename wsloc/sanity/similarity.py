"""Similarity of two saliency maps, as in Adebayo et al. 2018 (sec. 3, "Assessing similarity").

All functions take two stacks of maps ``a, b``: float ``[N, H, W]`` (or one map ``[H, W]``),
any range, and return float64 ``[N]`` (or a float for one map), one value per pair.

* :func:`spearman`: Spearman rank correlation of the flattened maps (ties get average ranks),
  of ``|a|`` vs ``|b|`` (``absolute=True``) or of the signed values. In [-1, 1].
* :func:`ssim`: structural similarity (Wang et al. 2004; skimage's implementation, 7x7 uniform
  window) of the absolute maps, each first scaled to [0, 1] by its own maximum of ``|map|``
  (``data_range=1``). In [-1, 1]; 1 for identical maps.
* :func:`hog_correlation`: Pearson correlation of the HOG features (Dalal & Triggs 2005;
  skimage: 9 orientations, 16x16-pixel cells, 2x2-cell blocks, L2-Hys) of the absolute maps
  scaled as for SSIM. In [-1, 1].

A correlation is undefined when a map (or its HOG vector) is constant, which happens: Grad-CAM
of a randomized network is often all zero after its ReLU. Such a pair scores 1 when the two
compared arrays are identical (e.g. both all zero) and 0 otherwise (a constant map carries no
ranking, so it shares none with the other map).

:func:`compare_maps` returns all four (``spearman_abs``, ``spearman``, ``ssim``, ``hog``).
The scaling before SSIM/HOG follows the paper's practice of comparing normalised absolute maps;
rank correlations are invariant to it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

METRICS = ("spearman_abs", "spearman", "ssim", "hog")


def _pair(a, b) -> tuple[np.ndarray, np.ndarray, bool]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    single = a.ndim == 2
    if single:
        a, b = a[None], b[None]
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"expected two maps [N, H, W] (or [H, W]) of the same shape, got {a.shape} and {b.shape}")
    return a, b, single


def _out(values: np.ndarray, single: bool):
    return float(values[0]) if single else values


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``x`` [N, D] with the same row of ``y``.

    A row pair with a constant row gets 1 if the rows are identical, else 0 (see module doc).
    """
    same = (x == y).all(axis=1)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(axis=1) / den
    r[den == 0] = np.where(same[den == 0], 1.0, 0.0)
    return np.clip(r, -1.0, 1.0)


def spearman(a, b, absolute: bool = True):
    """Spearman rank correlation per pair of maps (of absolute values when ``absolute``)."""
    a, b, single = _pair(a, b)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    return _out(_pearson_rows(ra, rb), single)


def unit_abs(maps) -> np.ndarray:
    """``|maps|`` divided per map by its maximum (all-zero maps stay zero): float64 in [0, 1]."""
    m = np.abs(np.asarray(maps, dtype=np.float64))
    peak = m.reshape(len(m), -1).max(axis=1).reshape(-1, *([1] * (m.ndim - 1)))
    return np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)


def ssim(a, b):
    """SSIM per pair of maps, on ``unit_abs`` maps with ``data_range=1`` (skimage)."""
    from skimage.metrics import structural_similarity

    a, b, single = _pair(a, b)
    a, b = unit_abs(a), unit_abs(b)
    vals = np.array([structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b)])
    return _out(vals, single)


def hog_features(maps, pixels_per_cell: int = 16) -> np.ndarray:
    """HOG feature vectors ``[N, D]`` of ``unit_abs`` maps ``[N, H, W]`` (skimage, see module doc)."""
    from skimage.feature import hog

    m = unit_abs(maps)
    return np.stack([hog(x, orientations=9, pixels_per_cell=(pixels_per_cell,) * 2, cells_per_block=(2, 2),
                         block_norm="L2-Hys", feature_vector=True) for x in m])


def hog_correlation(a, b, pixels_per_cell: int = 16):
    """Pearson correlation of the HOG features per pair of maps."""
    a, b, single = _pair(a, b)
    if min(a.shape[1:]) < 2 * pixels_per_cell:
        raise ValueError(f"maps of {a.shape[1:]} are too small for 2x2 HOG cells of {pixels_per_cell} pixels")
    return _out(_pearson_rows(hog_features(a, pixels_per_cell), hog_features(b, pixels_per_cell)), single)


def compare_maps(a, b) -> dict[str, np.ndarray]:
    """All metrics of :data:`METRICS` for pairs of maps ``[N, H, W]``: name -> float64 ``[N]``."""
    a, b, _ = _pair(a, b)
    ppc = 16 if min(a.shape[1:]) >= 32 else max(1, min(a.shape[1:]) // 4)
    return {
        "spearman_abs": spearman(a, b, absolute=True),
        "spearman": spearman(a, b, absolute=False),
        "ssim": ssim(a, b) if min(a.shape[1:]) >= 7 else np.full(len(a), np.nan),
        "hog": hog_correlation(a, b, pixels_per_cell=ppc),
    }
