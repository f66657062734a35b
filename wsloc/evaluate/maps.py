"""Score maps for the map-based metrics: validation and threshold grids.

A set of maps is a float array ``[N, H, W]`` or a list of ``[H_i, W_i]`` arrays (sizes may
differ). Every map-based metric first normalises each map to [0, 1]
(:func:`wsloc.normalize.normalize_maps`, rule ``"minmax"``: ``(s - min) / (max - min)`` in
float64; a constant map becomes all zeros, as in clovaai/wsolevaluation), then sweeps a grid
of thresholds ``tau_0 < tau_1 < ...``; the mask at ``tau`` is ``{s >= tau}`` (Choe et al.,
CVPR 2020, Sec. 4).

The grid for a step ``h`` is ``tau_i = i * h`` for ``i = 0 .. n-1`` with every ``tau_i < 1``
(``numpy.arange(0, 1, h)``; ``n = 1/h`` when ``1/h`` is an integer), e.g. 100 thresholds
0, 0.01, ..., 0.99 for ``h = 0.01``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import DatasetError

__all__ = ["as_map_list", "threshold_grid", "map_levels"]


def as_map_list(maps, name: str = "maps") -> list[np.ndarray]:
    """``[N, H, W]`` array or sequence of ``[H_i, W_i]`` arrays -> list of 2-D float arrays
    (views of the input where possible; float32 stays float32, integers become float64).

    Raises:
        DatasetError: a map is not 2-D, is empty, or holds NaN / infinity.
    """
    if isinstance(maps, np.ndarray) and maps.ndim == 2:
        raise DatasetError(f"{name}: expected [N, H, W] or a list of [H, W] maps, got one 2-D map")
    out = []
    for i, m in enumerate(maps):
        if hasattr(m, "detach"):  # torch tensor
            m = m.detach().cpu().numpy()
        m = np.asarray(m)
        if not np.issubdtype(m.dtype, np.floating):
            m = m.astype(np.float64)
        if m.ndim != 2 or m.size == 0:
            raise DatasetError(f"{name}[{i}]: expected a non-empty 2-D map, got shape {m.shape}")
        if not np.isfinite(m).all():
            raise DatasetError(f"{name}[{i}]: map contains NaN or infinite values")
        out.append(m)
    return out


def threshold_grid(step: float) -> np.ndarray:
    """Thresholds ``i * step`` in [0, 1) (float64, ascending), as ``numpy.arange(0, 1, step)``."""
    step = float(step)
    if not (0 < step <= 1) or not math.isfinite(step):
        raise ValueError(f"threshold step must be in (0, 1], got {step}")
    inv = 1.0 / step
    n = int(round(inv)) if abs(inv - round(inv)) < 1e-9 else int(math.ceil(inv))
    return np.arange(n, dtype=np.float64) * step


def check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.isfinite(t).all() or (np.diff(t) <= 0).any():
        raise ValueError("thresholds must be a non-empty, finite, strictly increasing sequence")
    return t


def map_levels(m: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Level index of every pixel: ``q = #{i : tau_i <= s} - 1`` (int32, -1 below ``tau_0``).

    The mask at ``tau_k`` is exactly ``{q >= k}``.
    """
    return (np.searchsorted(thresholds, m, side="right") - 1).astype(np.int32)
