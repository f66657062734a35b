"""Box intersection-over-union in the two conventions the evaluation supports.

Boxes are float ``[x0, y0, x1, y1]`` (xyxy). Results files hold COCO ``[x, y, w, h]``; a
box read from one is ``[x, y, x + w, y + h]`` (the numbers as given, nothing added or
removed). The two conventions then differ only in how they measure lengths:

``"continuous"``
    The numbers are continuous pixel coordinates (wsloc's internal convention, COCO's,
    ``pycocotools``'): width = ``x1 - x0``, height = ``y1 - y0``, intersection width =
    ``max(0, min(x1, x1') - max(x0, x0'))``. Two boxes that only touch
    (``x1 == x0'``) have IoU 0.

``"devkit"``
    The ILSVRC devkit's rule (``eval_localization_flat.m``; also the rule of
    clovaai/wsolevaluation): the numbers are read as *inclusive* pixel indices, so
    every length gets +1: width = ``x1 - x0 + 1``, intersection width =
    ``max(0, min(x1, x1') - max(x0, x0') + 1)``. With a COCO box this means width =
    ``w + 1``. Two boxes that touch (``x1 == x0'``) share one pixel column and overlap.

In both conventions a negative length counts as 0 and a pair whose union is not
positive has IoU 0.

This is wsloc's one IoU of boxes: every caller names its convention (there is no default).
``wsloc evaluate``, the sanity checks and the tuning scripts use ``"devkit"``; the
comparison of two runs' boxes (``scripts/compare_runs.py``) uses ``"continuous"``.
``"continuous"`` equals ``torchvision.ops.box_iou`` and ``"devkit"`` equals it on boxes
with 1 added to ``x1`` and ``y1`` (the tests check both); it is computed here in numpy
because evaluation and segmentation processes run without torch, and because
torchvision gives NaN where the union is empty.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONVENTIONS", "box_iou", "box_iou_broadcast", "check_convention", "describe_convention"]

#: The supported conventions (``wsloc evaluate``'s default first).
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


def box_iou_broadcast(a, b, convention: str) -> np.ndarray:
    """IoU of boxes paired by numpy broadcasting (the one implementation; :func:`box_iou` is it
    on all pairs).

    Args:
        a: float ``[..., 4]`` xyxy.
        b: float ``[..., 4]`` xyxy, broadcastable against ``a``.
        convention: ``"devkit"`` (+1 on every length) or ``"continuous"``; see the module doc.

    Returns:
        float64 ``[...]`` (the broadcast shape without the last axis) in ``[0, 1]``.
    """
    plus = 1.0 if check_convention(convention) == "devkit" else 0.0
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + plus
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + plus
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = np.maximum(a[..., 2] - a[..., 0] + plus, 0.0) * np.maximum(a[..., 3] - a[..., 1] + plus, 0.0)
    area_b = np.maximum(b[..., 2] - b[..., 0] + plus, 0.0) * np.maximum(b[..., 3] - b[..., 1] + plus, 0.0)
    union = area_a + area_b - inter
    ok = union > 0
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def box_iou(a, b, convention: str) -> np.ndarray:
    """IoU of every pair of xyxy boxes.

    Args:
        a: float ``[N, 4]`` (or ``[4]``) xyxy.
        b: float ``[M, 4]`` (or ``[4]``) xyxy.
        convention: ``"devkit"`` (+1 on every length) or ``"continuous"``; see the module doc.
            Required: the two rules differ by several points of accuracy on small boxes.

    Returns:
        float64 ``[N, M]`` in ``[0, 1]``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return box_iou_broadcast(a[:, None, :], b[None, :, :], convention)
