"""ILSVRC CLS-LOC error (top-1 / top-5), classification error and GT-known accuracy.

Definition (ILSVRC 2012-2017 classification+localization task, devkit readme): an
algorithm gives, per image, up to five guesses ``(c_j, b_j)`` (class, box), best first.
The image has ground-truth classes ``C_1..C_n`` (ILSVRC: n = 1) and for class ``C_k`` boxes
``B_k1..B_kM``. With ``d(c, C) = 0`` if ``c == C`` else 1 and ``f(b, B) = 0`` if
``IoU(b, B) >= 0.5`` else 1, the image's error counting the first ``k`` guesses is::

    e = 1/n * sum_k  min_{j <= k}  max( d(c_j, C_k), min_m f(b_j, B_km) )

so an image is right (``e = 0``) when one counted guess has the right class *and* a box with
IoU >= 0.5 with any ground-truth box of that class. A right box with a wrong class is an
error. The classification error drops the box term: ``min_j d(c_j, C_k)``. An image with no
guesses has error 1 in both (it is never skipped). A ground-truth class without any box
(image-level label only) cannot be localized: its localization term is 1.

GT-known localization accuracy: the fraction of images whose box made from the
ground-truth class's map has IoU >= 0.5 with a ground-truth box of that class (class
correctness ignored; no box = miss).

IoU convention: see :mod:`wsloc.evaluate.iou` (default ``"devkit"``, +1 on lengths).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .iou import box_iou, check_convention

__all__ = ["clsloc_errors", "image_clsloc_error", "gt_known_accuracy"]


def image_clsloc_error(guess_classes, guess_boxes, gt_boxes, gt_labels, gt_classes=None, k: int = 5,
                       iou_threshold: float = 0.5, iou_convention: str = "devkit") -> tuple[float, float]:
    """CLS-LOC and classification error of one image counting its first ``k`` guesses.

    Args:
        guess_classes: int ``[K]`` guessed classes, best first (K may be 0 or < k).
        guess_boxes: float ``[K, 4]`` xyxy box of each guess.
        gt_boxes: float ``[M, 4]`` xyxy ground-truth boxes.
        gt_labels: int ``[M]`` class of each ground-truth box.
        gt_classes: the image's ground-truth classes (default: the distinct ``gt_labels``).
        k: number of guesses counted (1 for top-1, 5 for top-5).
        iou_threshold: a box is right when IoU >= this.
        iou_convention: ``"devkit"`` or ``"continuous"``.

    Returns:
        (localization error, classification error), each in [0, 1] (0 or 1 when n = 1);
        ``(nan, nan)`` when the image has no ground-truth class at all.
    """
    check_convention(iou_convention)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    gc = np.asarray(guess_classes, dtype=np.int64).reshape(-1)[:k]
    gb = np.asarray(guess_boxes, dtype=np.float64).reshape(-1, 4)[:k]
    if len(gb) != len(gc):
        raise ValueError(f"{len(gc)} guessed classes but {len(gb)} guessed boxes")
    tb = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    tl = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    classes = np.unique(tl) if gt_classes is None else np.unique(np.asarray(list(gt_classes), np.int64))
    if classes.size == 0:
        return float("nan"), float("nan")
    loc = cls = 0.0
    iou = box_iou(gb, tb, iou_convention) if len(gb) and len(tb) else np.zeros((len(gb), len(tb)))
    for c in classes:
        same = gc == c
        cls += 0.0 if same.any() else 1.0
        of_c = tl == c
        hit = same & (iou[:, of_c] >= iou_threshold).any(axis=1) if of_c.any() else np.zeros_like(same)
        loc += 0.0 if hit.any() else 1.0
    return loc / classes.size, cls / classes.size


def clsloc_errors(guess_classes: Sequence, guess_boxes: Sequence, gt_boxes: Sequence, gt_labels: Sequence,
                  gt_classes: Sequence | None = None, ks: Sequence[int] = (1, 5), iou_threshold: float = 0.5,
                  iou_convention: str = "devkit") -> dict:
    """ILSVRC CLS-LOC and classification errors over a set of images.

    Args (one entry per image, see :func:`image_clsloc_error`):
        guess_classes: list of int ``[K_i]`` (best first; empty for no guesses).
        guess_boxes: list of float ``[K_i, 4]`` xyxy.
        gt_boxes: list of float ``[M_i, 4]`` xyxy.
        gt_labels: list of int ``[M_i]``.
        gt_classes: optional list of per-image class collections (default: distinct labels).
        ks: the top-k values to report.

    Returns:
        dict with, for each k, ``"top{k}_loc_error"`` and ``"top{k}_cls_error"`` (means in
        [0, 1] over the images that have a ground-truth class), per-image arrays
        ``"per_image"`` {name: float64 [N] (nan where no ground truth)}, ``"n_images"``
        (images counted), ``"n_without_gt"``, ``"iou_convention"``, ``"iou_threshold"``.
    """
    n = len(guess_classes)
    if not (len(guess_boxes) == len(gt_boxes) == len(gt_labels) == n):
        raise ValueError("guess_classes, guess_boxes, gt_boxes and gt_labels must have one entry per image")
    per = {}
    for k in ks:
        loc = np.empty(n)
        cls = np.empty(n)
        for i in range(n):
            loc[i], cls[i] = image_clsloc_error(
                guess_classes[i], guess_boxes[i], gt_boxes[i], gt_labels[i],
                None if gt_classes is None else gt_classes[i], k, iou_threshold, iou_convention)
        per[f"top{k}_loc_error"] = loc
        per[f"top{k}_cls_error"] = cls
    valid = ~np.isnan(next(iter(per.values()))) if per else np.zeros(n, bool)
    out: dict = {}
    for name, v in per.items():
        out[name] = float(v[valid].mean()) if valid.any() else float("nan")
    out.update(per_image=per, n_images=int(valid.sum()), n_without_gt=int(n - valid.sum()),
               iou_convention=iou_convention, iou_threshold=iou_threshold)
    return out


def gt_known_accuracy(pred_boxes: Sequence, gt_boxes: Sequence, iou_threshold: float = 0.5,
                      iou_convention: str = "devkit") -> tuple[float, np.ndarray]:
    """GT-known localization accuracy.

    Args:
        pred_boxes: per image the xyxy box ``[4]`` made from the ground-truth class's map,
            or None when there is none (counts as a miss).
        gt_boxes: per image float ``[M_i, 4]`` ground-truth boxes of that class.

    Returns:
        (accuracy in [0, 1], bool ``[N]`` hit per image). Accuracy of zero images is nan.
    """
    check_convention(iou_convention)
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(f"{len(pred_boxes)} predicted boxes for {len(gt_boxes)} images")
    hits = np.zeros(len(pred_boxes), bool)
    for i, (p, g) in enumerate(zip(pred_boxes, gt_boxes)):
        g = np.asarray(g, np.float64).reshape(-1, 4)
        if p is None or len(g) == 0:
            continue
        hits[i] = bool((box_iou(p, g, iou_convention) >= iou_threshold).any())
    return (float(hits.mean()) if len(hits) else float("nan")), hits
