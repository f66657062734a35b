"""Boxes from masks, box formats and COCO RLE masks (box IoU: :func:`wsloc.evaluate.iou.box_iou`).

Box convention (everywhere in wsloc): float64 ``[x0, y0, x1, y1]`` in continuous pixel
coordinates: a region covering pixel columns ``a..b`` (inclusive) and rows ``c..d`` has
``x0 = a, x1 = b + 1, y0 = c, y1 = d + 1``, so ``x1 - x0`` is its width in pixels, as in
COCO's ``[x, y, w, h]``.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["component_boxes", "components", "largest_component_box", "mask_box",
           "mask_to_rle", "rle_to_mask", "xywh_to_xyxy", "xyxy_to_xywh"]


def _as_mask(mask) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask [H, W], got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def components(mask, connectivity: int = 8, with_labels: bool = True
               ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Connected components of the True pixels of a 2-D mask, largest first.

    Args:
        mask: bool (or 0/1) ``[H, W]``.
        connectivity: 8 (diagonal neighbours connect) or 4.
        with_labels: also return the label image (skip it to save a pass over the pixels).

    Returns:
        (labels int32 ``[H, W]``: 0 for background and ``i + 1`` for the i-th component in
        the returned order, or None when ``with_labels`` is False; boxes float64 ``[M, 4]``
        xyxy; areas int64 ``[M]`` pixel counts). Components are sorted by area, descending;
        equal areas keep raster order of their first pixel.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    mask = _as_mask(mask)
    h, w = mask.shape
    if mask.size == 0 or not mask.any():
        return (np.zeros((h, w), np.int32) if with_labels else None), np.zeros((0, 4)), np.zeros(0, np.int64)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(mask).view(np.uint8),
                                                           connectivity=connectivity, ltype=cv2.CV_32S)
    stats = stats[1:].astype(np.int64)
    order = np.argsort(-stats[:, cv2.CC_STAT_AREA], kind="stable")
    stats = stats[order]
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    boxes = np.stack([x, y, x + stats[:, cv2.CC_STAT_WIDTH], y + stats[:, cv2.CC_STAT_HEIGHT]], 1).astype(np.float64)
    if not with_labels:
        return None, boxes, stats[:, cv2.CC_STAT_AREA]
    relabel = np.zeros(n, np.int32)
    relabel[order + 1] = np.arange(1, n, dtype=np.int32)
    return relabel[labels], boxes, stats[:, cv2.CC_STAT_AREA]


def component_boxes(mask, connectivity: int = 8) -> np.ndarray:
    """Boxes (float64 ``[M, 4]`` xyxy) of all connected components, largest (pixel count) first.

    ``[0, 4]`` for an empty mask.
    """
    mask = _as_mask(mask)
    if mask.size == 0 or not mask.any():
        return np.zeros((0, 4))
    return components(mask, connectivity, with_labels=False)[1]


def largest_component_box(mask, connectivity: int = 8) -> np.ndarray | None:
    """Box (float64 ``[4]`` xyxy) of the largest connected component (Simonyan et al.'s rule).

    None for an empty mask. Ties between equal areas go to the component whose first
    pixel comes first in raster order.
    """
    boxes = component_boxes(mask, connectivity)
    return boxes[0] if len(boxes) else None


def mask_box(mask) -> np.ndarray | None:
    """Bounding box (float64 ``[4]`` xyxy) of all True pixels, None for an empty mask."""
    mask = _as_mask(mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def xyxy_to_xywh(boxes) -> np.ndarray:
    """``[..., 4]`` xyxy -> COCO ``[x, y, w, h]`` (float64)."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def xywh_to_xyxy(boxes) -> np.ndarray:
    """COCO ``[..., 4]`` ``[x, y, w, h]`` -> xyxy (float64)."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def mask_to_rle(mask) -> dict:
    """bool ``[H, W]`` -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (JSON-serialisable)."""
    mask = _as_mask(mask)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(s) for s in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO RLE (compressed ``counts`` as str or bytes, or uncompressed list counts) -> bool ``[H, W]``."""
    h, w = (int(s) for s in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    with warnings.catch_warnings():  # pycocotools' decode trips numpy 2's __array__(copy=) deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)
