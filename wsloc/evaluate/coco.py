"""COCO box and mask AP of a results list, through ``pycocotools.cocoeval.COCOeval``.

COCOeval's own rules apply (continuous IoU, no +1; 101-point interpolated precision;
maxDets 1/10/100; area ranges small/medium/large). Categories without any ground-truth
annotation count for nothing in COCOeval's averages, so the evaluation is restricted to the
categories that have one (same figures, far fewer empty (image, category) pairs to visit).
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np

from ..errors import DatasetError

__all__ = ["coco_ap", "STAT_NAMES"]

#: Names of COCOeval's 12 summary numbers, in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _sparse_cocoeval():
    """COCOeval whose ``evaluate`` visits only the (image, category) pairs that have a ground
    truth or a detection. COCOeval's own ``evaluateImg`` returns None for every other pair,
    which is what this stores for them, so ``accumulate`` / ``summarize`` give identical
    figures; it only skips millions of empty calls on 1000-class data."""
    from pycocotools.cocoeval import COCOeval

    class SparseCOCOeval(COCOeval):
        def evaluate(self):
            p = self.params
            if not p.useCats:
                return super().evaluate()
            p.imgIds = list(np.unique(p.imgIds))
            p.catIds = list(np.unique(p.catIds))
            p.maxDets = sorted(p.maxDets)
            self.params = p
            self._prepare()
            pairs = {k for k, v in self._gts.items() if v} | {k for k, v in self._dts.items() if v}
            self.ious = {k: self.computeIoU(*k) for k in pairs}
            max_det = p.maxDets[-1]
            self.evalImgs = [self.evaluateImg(i, c, a, max_det) if (i, c) in pairs else None
                             for c in p.catIds for a in p.areaRng for i in p.imgIds]
            self._paramsEval = copy.deepcopy(self.params)

    return SparseCOCOeval


def _ground_truth(dataset):
    from pycocotools.coco import COCO
    from pycocotools import mask as mask_utils

    data = copy.deepcopy(dataset.coco.dataset)
    sizes = {im["id"]: (im.get("height"), im.get("width")) for im in data["images"]}
    for k, a in enumerate(data["annotations"]):
        a.setdefault("id", k + 1)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            if a.get("bbox") is not None:
                a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
            elif a.get("segmentation"):
                h, w = sizes[a["image_id"]]
                seg = a["segmentation"]
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if isinstance(seg, list) \
                    else mask_utils.frPyObjects(seg, h, w) if isinstance(seg.get("counts"), list) else seg
                a["area"] = float(mask_utils.area(rle))
        if "bbox" not in a and a.get("segmentation"):
            h, w = sizes[a["image_id"]]
            seg = a["segmentation"]
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if isinstance(seg, list) else seg
            a["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_ap(results: list[dict], dataset, iou_type: str = "bbox", sparse: bool = True,
            cat_ids=None) -> dict:
    """COCO AP / AR of ``results`` against ``dataset`` (a :class:`wsloc.io.CocoDataset`).

    Args:
        results: validated result dicts (``bbox`` or, for ``"segm"``, ``segmentation`` RLE).
        iou_type: ``"bbox"`` or ``"segm"``.
        sparse: visit only non-empty (image, category) pairs (same figures, much faster);
            False runs the stock ``COCOeval.evaluate``.
        cat_ids: evaluate only these categories (e.g. a class map's mapped ones; results of
            other categories are left out); default every annotated category.

    Returns:
        dict of :data:`STAT_NAMES` -> value (fractions; -1 where COCOeval has no data), plus
        ``"iou_type"`` and ``"n_results"``. All images of the annotation file are evaluated;
        an image without results contributes only misses.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', not {iou_type!r}")
    gt = _ground_truth(dataset)
    ann_cats = sorted({a["category_id"] for a in gt.dataset["annotations"]})
    if cat_ids is not None:
        keep = {int(c) for c in cat_ids}
        ann_cats = [c for c in ann_cats if c in keep]
        results = [r for r in results if r["category_id"] in keep]
    if not ann_cats:
        raise DatasetError(f"{getattr(dataset, 'ann_file', 'annotations')}: no annotations to compute COCO AP")
    if iou_type == "segm":
        if not any(a.get("segmentation") for a in gt.dataset["annotations"]):
            raise DatasetError(f"{getattr(dataset, 'ann_file', 'annotations')}: no ground-truth "
                               "segmentations for mask AP")
        results = [r for r in results if r.get("segmentation") is not None]
    dets = []
    for r in results:
        d = {"image_id": r["image_id"], "category_id": r["category_id"], "score": float(r["score"])}
        if iou_type == "bbox":
            d["bbox"] = [float(v) for v in r["bbox"]]
        else:
            seg = dict(r["segmentation"])
            if isinstance(seg["counts"], list):
                from pycocotools import mask as mask_utils
                seg = mask_utils.frPyObjects(seg, *seg["size"])
            d["segmentation"] = seg
        dets.append(d)
    with contextlib.redirect_stdout(io.StringIO()):
        if dets:
            dt = gt.loadRes(dets)
        else:
            from pycocotools.coco import COCO
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"],
                          "annotations": []}
            dt.createIndex()
        ev = (_sparse_cocoeval() if sparse else COCOeval)(gt, dt, iou_type)
        ev.params.imgIds = sorted(gt.getImgIds())
        ev.params.catIds = ann_cats
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = np.asarray(ev.stats, np.float64)
    out = {name: float(v) for name, v in zip(STAT_NAMES, stats)}
    out.update(iou_type=iou_type, n_results=len(dets))
    return out
