"""Pointing game (Zhang et al., ECCV 2016, "Top-down Neural Attention by Excitation Backprop").

For each image, the point is the map's maximum (the first one in raster order when several
pixels tie). It is a **hit** when some pixel of the object lies within ``tolerance`` pixels
of it: Euclidean distance between pixel centres ``<= tolerance`` (default 15, the paper's).
The object is the ground-truth mask, or the union of the ground-truth boxes, a box covering
the pixels whose centres lie inside it (``x0 <= col + 0.5 <= x1`` and the same for rows; a
box too thin to contain a centre covers the pixel holding its centre).

Accuracy per class = hits / images of that class; the reported **pointing accuracy** is the
mean over classes (the paper's "mean accuracy across categories"). Images without any object
are left out and counted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import DatasetError
from .maps import as_map_list

__all__ = ["pointing_game", "max_point"]


def max_point(m: np.ndarray) -> tuple[int, int]:
    """(row, col) of the first maximum of a 2-D map in raster order."""
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(r), int(c)


def _box_pixels(box, h: int, w: int) -> tuple[int, int, int, int] | None:
    """Inclusive pixel ranges (r0, r1, c0, c1) of a continuous xyxy box, clipped to the map."""
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, c1 = int(np.ceil(x0 - 0.5)), int(np.floor(x1 - 0.5))
    r0, r1 = int(np.ceil(y0 - 0.5)), int(np.floor(y1 - 0.5))
    if c0 > c1:
        c0 = c1 = int(np.floor((x0 + x1) / 2))
    if r0 > r1:
        r0 = r1 = int(np.floor((y0 + y1) / 2))
    c0, c1, r0, r1 = max(c0, 0), min(c1, w - 1), max(r0, 0), min(r1, h - 1)
    if c0 > c1 or r0 > r1:
        return None
    return r0, r1, c0, c1


def _hit_boxes(point, boxes, shape, tol2: float) -> bool | None:
    r, c = point
    found = False
    for b in boxes:
        px = _box_pixels(b, *shape)
        if px is None:
            continue
        found = True
        r0, r1, c0, c1 = px
        dr = r0 - r if r < r0 else (r - r1 if r > r1 else 0)
        dc = c0 - c if c < c0 else (c - c1 if c > c1 else 0)
        if dr * dr + dc * dc <= tol2:
            return True
    return False if found else None


def _hit_mask(point, mask, tol2: float) -> bool | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    r, c = point
    return bool(((ys - r) ** 2 + (xs - c) ** 2 <= tol2).any())


def pointing_game(maps, gt_boxes: Sequence | None = None, gt_masks: Sequence | None = None,
                  labels: Sequence | None = None, tolerance: float = 15) -> dict:
    """Pointing-game accuracy.

    Args:
        maps: float ``[N, H, W]`` or list of ``[H_i, W_i]`` (one map per image, for the class
            in ``labels``); boxes and masks are in the map's pixel frame.
        gt_boxes: per image float ``[M_i, 4]`` xyxy boxes of the object (used when
            ``gt_masks`` is None or an image's mask is None).
        gt_masks: per image bool ``[H_i, W_i]`` object mask, or None.
        labels: per image class id (default: all images in one class).
        tolerance: pixels (distance between pixel centres), default 15.

    Returns:
        dict: ``"accuracy"`` (mean of per-class accuracies, in [0, 1]), ``"overall"`` (hits /
        images), ``"per_class"`` {class: accuracy}, ``"hits"`` bool ``[N]`` (False for images
        left out), ``"points"`` int ``[N, 2]`` (row, col), ``"n_images"`` (counted),
        ``"n_skipped"`` (no object), ``"tolerance"``.
    """
    maps = as_map_list(maps)
    n = len(maps)
    if gt_boxes is None and gt_masks is None:
        raise DatasetError("pointing_game: give gt_boxes or gt_masks")
    for name, seq in (("gt_boxes", gt_boxes), ("gt_masks", gt_masks), ("labels", labels)):
        if seq is not None and len(seq) != n:
            raise DatasetError(f"{name}: {len(seq)} entries for {n} maps")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    tol2 = float(tolerance) ** 2
    hits = np.zeros(n, bool)
    counted = np.zeros(n, bool)
    points = np.zeros((n, 2), np.int64)
    for i, m in enumerate(maps):
        points[i] = max_point(m)
        hit = None
        if gt_masks is not None and gt_masks[i] is not None:
            mask = np.asarray(gt_masks[i], bool)
            if mask.shape != m.shape:
                raise DatasetError(f"gt_masks[{i}]: shape {mask.shape} differs from the map's {m.shape}")
            hit = _hit_mask(points[i], mask, tol2)
        elif gt_boxes is not None:
            boxes = np.asarray(gt_boxes[i] if gt_boxes[i] is not None else [], np.float64).reshape(-1, 4)
            hit = _hit_boxes(points[i], boxes, m.shape, tol2)
        if hit is not None:
            counted[i] = True
            hits[i] = hit
    labs = np.zeros(n, np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
    per_class = {int(c): float(hits[counted & (labs == c)].mean()) for c in np.unique(labs[counted])}
    return {
        "accuracy": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        "overall": float(hits[counted].mean()) if counted.any() else float("nan"),
        "per_class": per_class,
        "hits": hits,
        "points": points,
        "n_images": int(counted.sum()),
        "n_skipped": int(n - counted.sum()),
        "tolerance": float(tolerance),
    }
