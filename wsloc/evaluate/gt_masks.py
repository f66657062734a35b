"""GT-known mask IoU: every (image, ground-truth category) pair scored against the category's union mask.

The protocol (the mask half of wsolevaluation's GT-known figures, for multi-object images)::

    for every scored image, for every category c with at least one non-crowd instance mask:
        gt   = union of the non-crowd instance masks of c          (bool [H, W])
        pred = the mask made for c: the result flagged gt_known for c, else the image's
               best-ranked guess of c; no such mask -> IoU 0 (a miss, counted)
        IoU(pred, gt)  (:func:`wsloc.evaluate.masks.mask_iou`)

Figures: mean IoU over the pairs, per size bucket (:data:`MASK_SIZE_BUCKETS`: the union's
share of the image's pixels) and the share of pairs with IoU >= 0.5. Crowd regions
(``iscrowd: 1``) are left out of the union and are not pairs of their own. With
``categories`` given, only pairs of those categories count (a class map's mapped categories:
the others can never be predicted).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .masks import mask_iou, pixel_counts, pxap_from_counts, sweep_thresholds

__all__ = ["MASK_SIZE_BUCKETS", "gt_union_masks", "gt_known_mask_iou", "gt_known_pxap", "size_bucket"]

#: Mask-size buckets: (name, low, high) of the ground-truth union's share of the image's pixels.
MASK_SIZE_BUCKETS = (("small (<5%)", 0.0, 0.05), ("medium (5-25%)", 0.05, 0.25), ("large (>25%)", 0.25, float("inf")))


def size_bucket(share: float, buckets=MASK_SIZE_BUCKETS) -> str | None:
    """Name of the bucket ``lo <= share < hi`` of ``buckets`` (None for nan)."""
    for name, lo, hi in buckets:
        if lo <= share < hi:
            return name
    return None


def gt_union_masks(coco, image_ids: Iterable[int], categories: set | None = None) -> list[tuple[int, int, np.ndarray]]:
    """The ground-truth side of the pairs: ``(image_id, category_id, union bool [H, W])``.

    Args:
        coco: ``pycocotools.coco.COCO`` with images (height, width) and annotations
            (``segmentation`` as RLE or polygons, optional ``iscrowd``).
        image_ids: the images scored, in order.
        categories: only these category ids (default all).

    Pairs come in image order, categories ascending; instances without a segmentation are
    skipped (a category none of whose instances has one, or whose union is empty, gives no pair).
    """
    out = []
    for image_id in image_ids:
        per: dict[int, np.ndarray] = {}
        for a in coco.imgToAnns.get(image_id, []):
            c = int(a["category_id"])
            if a.get("iscrowd") or not a.get("segmentation") or (categories is not None and c not in categories):
                continue
            m = coco.annToMask(a).astype(bool)
            per[c] = per[c] | m if c in per else m
        out.extend((image_id, c, per[c]) for c in sorted(per) if per[c].any())
    return out


def gt_known_mask_iou(pairs: list[tuple[int, int, np.ndarray]],
                      predicted: Callable[[int, int], np.ndarray | None],
                      buckets=MASK_SIZE_BUCKETS, iou_threshold: float = 0.5) -> dict:
    """Score the pairs of :func:`gt_union_masks`.

    Args:
        pairs: ``(image_id, category_id, gt union bool [H, W])``.
        predicted: ``(image_id, category_id) -> bool [H, W]`` mask made for that category, or None.
        buckets: size buckets (name, low, high) of the union's share of the image.
        iou_threshold: the IoU counted as a right mask (0.5).

    Returns:
        dict: ``miou`` (fraction, nan with no pair), ``iou50`` (share of pairs with
        IoU >= ``iou_threshold``), ``n_pairs``, ``n_missing`` (pairs without a mask made for
        them: IoU 0), ``by_size`` ({bucket: {"n", "miou", "iou50"}}), ``per_pair`` (list of
        ``[image_id, category_id, share, iou]``).
    """
    rows = []
    n_missing = 0
    for image_id, c, gt in pairs:
        pred = predicted(image_id, c)
        if pred is None:
            n_missing += 1
            iou = 0.0
        else:
            iou = mask_iou(pred, gt)
        rows.append([int(image_id), int(c), float(gt.sum() / gt.size), float(iou)])
    ious = np.array([r[3] for r in rows], np.float64)
    shares = np.array([r[2] for r in rows], np.float64)

    def summary(sel) -> dict:
        v = ious[sel]
        return {"n": int(sel.sum()), "miou": float(v.mean()) if v.size else None,
                "iou50": float((v >= iou_threshold).mean()) if v.size else None}

    every = summary(np.ones(len(rows), bool))
    by_size = {name: summary((shares >= lo) & (shares < hi)) for name, lo, hi in buckets}
    return {"miou": every["miou"] if rows else float("nan"), "iou50": every["iou50"], "n_pairs": len(rows),
            "n_missing": n_missing, "iou_threshold": iou_threshold, "by_size": by_size, "per_pair": rows}


def gt_known_pxap(pairs: list[tuple[int, int, np.ndarray]], map_of: Callable[[int, int], np.ndarray | None],
                  step: float = 0.01) -> dict:
    """PxAP (:func:`wsloc.evaluate.masks.pxap`, pooled over pixels) of each pair's saliency map
    against its union mask, one map at a time (full-resolution maps are never all in memory).

    Args:
        pairs: ``(image_id, category_id, gt union bool [H, W])``.
        map_of: ``(image_id, category_id) -> float [h, w]`` map of that category (any
            resolution: resized to ``[H, W]`` by :func:`wsloc.segment.seeds.resize_map`, as the
            segmenter does), or None when
            none was saved (the category was not among the image's results): the pair is
            left out and counted.

    Returns:
        dict: ``pxap``, ``n_pairs`` (scored), ``n_without_map``; ``pxap`` nan with no pair.
    """
    from ..segment.seeds import resize_map

    t = sweep_thresholds(step)
    TP = np.zeros(len(t), np.int64)
    FP = np.zeros(len(t), np.int64)
    NP = n = missing = 0
    for image_id, c, gt in pairs:
        m = map_of(image_id, c)
        if m is None:
            missing += 1
            continue
        m = np.asarray(m, np.float32)
        if m.shape != gt.shape:
            m = resize_map(m, gt.shape)
        tp, fp, n_gt = pixel_counts(m, gt, t)
        TP += tp
        FP += fp
        NP += n_gt
        n += 1
    ap = pxap_from_counts(TP, FP, NP, t)["pxap"] if NP else float("nan")
    return {"pxap": ap, "n_pairs": n, "n_without_map": missing, "step": step}
