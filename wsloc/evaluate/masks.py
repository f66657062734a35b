"""Mask metrics: PxAP (Choe et al., CVPR 2020), mean IoU over a threshold sweep, binary-mask IoU.

Maps are normalised per map to [0, 1] (:mod:`wsloc.evaluate.maps`). Thresholds: the grid
``i * step`` (< 1) **plus 1.0**, as in clovaai/wsolevaluation's mask evaluator (a pixel
equal to the map's maximum is predicted at 1.0). The predicted mask at ``tau`` is
``{s >= tau}``.

PxAP (pixel average precision), pooled over all pixels of all images (ignored pixels left out)::

    TP(tau) = #{gt pixels with s >= tau},  FP(tau) = #{background pixels with s >= tau}
    P(tau) = TP / (TP + FP),  R(tau) = TP / #gt pixels
    PxAP = sum_i P(tau_i) * (R(tau_i) - R(tau_{i+1}))   (thresholds ascending, R(above the last) = 0)

Terms where nothing is predicted (TP + FP = 0, hence no recall step) add 0. This is the
step-wise area under the precision-recall curve of wsolevaluation's ``MaskEvaluator``.

Mean IoU at ``tau``: the mean over images of ``|pred & gt| / |pred | gt|`` (ignored pixels
left out). Images whose ground-truth mask is empty are left out (and counted). The
best-threshold IoU is the maximum of this curve over ``tau``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import DatasetError
from ..normalize import normalize_maps
from .maps import as_map_list, check_thresholds, map_levels, threshold_grid

__all__ = ["pxap", "pxap_from_counts", "pixel_counts", "mask_iou_curve", "mask_iou", "mean_mask_iou", "sweep_thresholds"]


def sweep_thresholds(step: float = 0.01) -> np.ndarray:
    """The mask metrics' thresholds: ``threshold_grid(step)`` followed by 1.0."""
    return np.append(threshold_grid(step), 1.0)


def _check_masks(masks: Sequence, maps: list[np.ndarray], name: str) -> list[np.ndarray | None]:
    if len(masks) != len(maps):
        raise DatasetError(f"{name}: {len(masks)} masks for {len(maps)} maps")
    out = []
    for i, (g, m) in enumerate(zip(masks, maps)):
        if g is None:
            out.append(None)
            continue
        g = np.asarray(g)
        if g.shape != m.shape:
            raise DatasetError(f"{name}[{i}]: mask shape {g.shape} differs from the map's {m.shape}")
        out.append(g.astype(bool))
    return out


def _histograms(maps, gt_masks, ignore_masks, thresholds):
    """Per image: counts of gt / background pixels whose level is >= each threshold index."""
    maps = as_map_list(maps)
    gts = _check_masks(gt_masks, maps, "gt_masks")
    ign = _check_masks(ignore_masks, maps, "ignore_masks") if ignore_masks is not None else [None] * len(maps)
    T = len(thresholds)
    tp = np.zeros((len(maps), T), np.int64)
    fp = np.zeros((len(maps), T), np.int64)
    n_gt = np.zeros(len(maps), np.int64)
    for i, (m, g, ig) in enumerate(zip(maps, gts, ign)):
        if g is None:
            raise DatasetError(f"gt_masks[{i}]: no ground-truth mask")
        q = map_levels(normalize_maps(np.asarray(m, np.float64), "minmax"), thresholds) + 1  # 0: below all
        keep = ~ig if ig is not None else np.ones(g.shape, bool)
        pos = np.bincount(q[g & keep], minlength=T + 1)
        neg = np.bincount(q[~g & keep], minlength=T + 1)
        # level index j (1-based) counts towards every threshold index < j
        tp[i] = np.cumsum(pos[::-1])[::-1][1:]
        fp[i] = np.cumsum(neg[::-1])[::-1][1:]
        n_gt[i] = int((g & keep).sum())
    return tp, fp, n_gt


def _thresholds(step, thresholds):
    return sweep_thresholds(step) if thresholds is None else check_thresholds(thresholds)


def pxap(maps, gt_masks: Sequence, step: float = 0.01, thresholds=None, ignore_masks: Sequence | None = None) -> dict:
    """Pixel average precision over a set of maps.

    Args:
        maps: float ``[N, H, W]`` or list of ``[H_i, W_i]``.
        gt_masks: per map bool ``[H_i, W_i]`` foreground mask.
        step: threshold grid step (thresholds = grid + 1.0) when ``thresholds`` is None.
        thresholds: explicit ascending thresholds (used as given).
        ignore_masks: optional per map bool masks of pixels to leave out.

    Returns:
        dict: ``"pxap"`` (fraction in [0, 1]), ``"precision"``, ``"recall"`` float64 ``[T]``
        (precision nan where nothing is predicted), ``"thresholds"``, ``"step"``, ``"n_images"``.

    Raises:
        DatasetError: no ground-truth pixel at all, or masks not matching the maps.
    """
    t = _thresholds(step, thresholds)
    tp, fp, n_gt = _histograms(maps, gt_masks, ignore_masks, t)
    out = pxap_from_counts(tp.sum(0), fp.sum(0), int(n_gt.sum()), t)
    out.update(step=None if thresholds is not None else float(step), n_images=len(tp))
    return out


def pixel_counts(m: np.ndarray, gt: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """One map's ``(TP [T], FP [T], gt pixels)`` at ``thresholds`` (for pooling PxAP over maps one at a
    time, :func:`pxap_from_counts`, without holding them all)."""
    tp, fp, n_gt = _histograms([m], [gt], None, thresholds)
    return tp[0], fp[0], int(n_gt[0])


def pxap_from_counts(TP, FP, NP: int, t: np.ndarray) -> dict:
    """PxAP from pooled counts ``TP``, ``FP`` ``[T]`` at thresholds ``t`` and ``NP`` gt pixels
    (the module doc's formula); dict as :func:`pxap` gives, without ``step`` / ``n_images``."""
    TP, FP, NP = np.asarray(TP, np.float64), np.asarray(FP, np.float64), float(NP)
    if NP <= 0:
        raise DatasetError("gt_masks: no foreground pixel in any ground-truth mask; PxAP is undefined")
    pred = TP + FP
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred > 0, TP / np.where(pred > 0, pred, 1), np.nan)
    recall = TP / NP
    drop = recall - np.append(recall[1:], 0.0)
    ap = math.fsum(np.where(pred > 0, precision, 0.0) * drop)  # correctly rounded, order-free
    return {"pxap": ap, "precision": precision, "recall": recall, "thresholds": t}


def mask_iou_curve(maps, gt_masks: Sequence, step: float = 0.01, thresholds=None,
                   ignore_masks: Sequence | None = None) -> dict:
    """Mean IoU of ``{s >= tau}`` with the ground-truth mask, for every threshold.

    Returns:
        dict: ``"miou"`` float64 ``[T]`` (mean over images with a non-empty gt mask),
        ``"best_iou"``, ``"best_threshold"``, ``"per_image"`` float64 ``[N, T]`` (nan for
        images left out), ``"thresholds"``, ``"step"``, ``"n_images"`` (counted),
        ``"n_empty_gt"`` (left out).
    """
    t = _thresholds(step, thresholds)
    tp, fp, n_gt = _histograms(maps, gt_masks, ignore_masks, t)
    valid = n_gt > 0
    per = np.full(tp.shape, np.nan)
    per[valid] = tp[valid] / (n_gt[valid, None] + fp[valid])
    miou = per[valid].mean(axis=0) if valid.any() else np.full(len(t), np.nan)
    best = int(np.nanargmax(miou)) if valid.any() else 0
    return {"miou": miou, "best_iou": float(miou[best]), "best_threshold": float(t[best]),
            "per_image": per, "thresholds": t, "step": None if thresholds is not None else float(step),
            "n_images": int(valid.sum()), "n_empty_gt": int((~valid).sum())}


def mask_iou(pred, gt, ignore=None) -> float:
    """IoU of two bool masks ``[H, W]`` (ignored pixels left out); two empty masks -> nan."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise DatasetError(f"mask shapes differ: prediction {pred.shape}, ground truth {gt.shape}")
    if ignore is not None:
        keep = ~np.asarray(ignore, bool)
        pred, gt = pred & keep, gt & keep
    union = int((pred | gt).sum())
    return float((pred & gt).sum() / union) if union else float("nan")


def mean_mask_iou(preds: Sequence, gts: Sequence) -> dict:
    """Mean IoU of binary predictions (None = no prediction, IoU 0) with ground-truth masks.

    Images with an empty ground-truth mask are left out (and counted in ``"n_empty_gt"``).
    Returns ``{"miou", "per_image" float64 [N] (nan when left out), "n_images", "n_empty_gt"}``.
    """
    if len(preds) != len(gts):
        raise DatasetError(f"{len(preds)} predicted masks for {len(gts)} ground-truth masks")
    per = np.full(len(gts), np.nan)
    for i, (p, g) in enumerate(zip(preds, gts)):
        g = np.asarray(g, bool)
        if not g.any():
            continue
        per[i] = 0.0 if p is None else mask_iou(p, g)
    valid = ~np.isnan(per)
    return {"miou": float(per[valid].mean()) if valid.any() else float("nan"), "per_image": per,
            "n_images": int(valid.sum()), "n_empty_gt": int((~valid).sum())}
