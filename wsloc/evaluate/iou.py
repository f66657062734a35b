"""Box intersection-over-union in the two conventions the evaluation supports.

Boxes are float ``[x0, y0, x1, y1]`` (xyxy). Results files hold COCO ``[x, y, w, h]``; a
box read from one is ``[x, y, x + w, y + h]`` (the numbers as given, nothing added or
removed). The two conventions then differ only in how they measure lengths:

``"continuous"``
    The numbers are continuous pixel coordinates (wsloc's internal convention, COCO's,
    ``pycocotools``'): width = ``x1 - x0``, height = ``y1 - y0``, intersection width =
    ``max(0, min(x1, x1') - max(x0, x0'))``. Two boxes that only touch
    (``x1 == x0'``) have IoU 0.

``"devkit"`` (default)
    The ILSVRC devkit's rule (``eval_localization_flat.m``; also the rule of
    clovaai/wsolevaluation): the numbers are read as *inclusive* pixel indices, so
    every length gets +1: width = ``x1 - x0 + 1``, intersection width =
    ``max(0, min(x1, x1') - max(x0, x0') + 1)``. With a COCO box this means width =
    ``w + 1``. Two boxes that touch (``x1 == x0'``) share one pixel column and overlap.

In both conventions a negative length counts as 0 and a pair whose union is not
positive has IoU 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONVENTIONS", "box_iou", "check_convention", "describe_convention"]

#: The supported conventions, default first.
CONVENTIONS = ("devkit", "continuous")

_DESCRIPTIONS = {
    "devkit": ("devkit (ILSVRC devkit rule: box numbers x0, y0, x1=x+w, y1=y+h read as inclusive "
               "pixel indices, width = x1 - x0 + 1)"),
    "continuous": "continuous (width = x1 - x0 = w, as COCO/pycocotools)",
}


def check_convention(convention: str) -> str:
    """Return ``convention`` if it is one of :data:`CONVENTIONS`, else raise ValueError naming it."""
    if convention not in CONVENTIONS:
        raise ValueError(f"iou_convention must be one of {CONVENTIONS}, not {convention!r}")
    return convention


def describe_convention(convention: str) -> str:
    """One line saying what ``convention`` does (printed in report headers)."""
    return _DESCRIPTIONS[check_convention(convention)]


def box_iou(a, b, convention: str = "devkit") -> np.ndarray:
    """IoU of every pair of xyxy boxes.

    Args:
        a: float ``[N, 4]`` (or ``[4]``) xyxy.
        b: float ``[M, 4]`` (or ``[4]``) xyxy.
        convention: ``"devkit"`` (+1 on every length) or ``"continuous"``; see the module doc.

    Returns:
        float64 ``[N, M]`` in ``[0, 1]``.
    """
    plus = 1.0 if check_convention(convention) == "devkit" else 0.0
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + plus
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + plus
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = np.maximum(a[:, 2] - a[:, 0] + plus, 0.0) * np.maximum(a[:, 3] - a[:, 1] + plus, 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0] + plus, 0.0) * np.maximum(b[:, 3] - b[:, 1] + plus, 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    ok = union > 0
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)
