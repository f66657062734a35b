"""GT-known mask IoU per (image, category), its size buckets, and mask AP beside box AP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wsloc.boxes import mask_to_rle
from wsloc.evaluate import evaluate_results, format_table, make_result
from wsloc.evaluate.gt_masks import MASK_SIZE_BUCKETS, gt_known_mask_iou, size_bucket


def _mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_bucket_edges():
    assert [b[0] for b in MASK_SIZE_BUCKETS] == ["small (<5%)", "medium (5-25%)", "large (>25%)"]
    assert size_bucket(0.0) == "small (<5%)" and size_bucket(0.0499) == "small (<5%)"
    assert size_bucket(0.05) == "medium (5-25%)" and size_bucket(0.2499) == "medium (5-25%)"
    assert size_bucket(0.25) == "large (>25%)" and size_bucket(1.0) == "large (>25%)"
    assert size_bucket(float("nan")) is None


def test_gt_known_mask_iou_hand_computed():
    # 10 x 10 images. A: gt 2x2 (4 %: small), prediction 2x1 inside it: IoU 2/4.
    # B: gt 5x4 (20 %: medium), no mask made: IoU 0 (missing).
    # C: gt 10x5 (50 %: large), prediction 10x4 inside + 10x2 outside: IoU 40/70.
    pairs = [(1, 7, _mask(10, 10, 0, 2, 0, 2)), (1, 8, _mask(10, 10, 5, 10, 0, 4)),
             (2, 7, _mask(10, 10, 0, 10, 0, 5))]
    preds = {(1, 7): _mask(10, 10, 0, 2, 0, 1), (2, 7): _mask(10, 10, 0, 10, 1, 7)}
    m = gt_known_mask_iou(pairs, lambda i, c: preds.get((i, c)))
    ious = [0.5, 0.0, 40 / 70]
    assert m["n_pairs"] == 3 and m["n_missing"] == 1
    assert m["miou"] == pytest.approx(np.mean(ious))
    assert m["iou50"] == pytest.approx(2 / 3)
    assert m["by_size"]["small (<5%)"] == {"n": 1, "miou": 0.5, "iou50": 1.0}
    assert m["by_size"]["medium (5-25%)"] == {"n": 1, "miou": 0.0, "iou50": 0.0}
    assert m["by_size"]["large (>25%)"]["miou"] == pytest.approx(40 / 70)
    assert [r[2] for r in m["per_pair"]] == pytest.approx([0.04, 0.2, 0.5])


def _coco(tmp_path, with_map=True):
    # one 20 x 20 image: category 1 has two instances (rows 0-4 and rows 10-14, full width)
    # and a crowd region (rows 15-19) left out; category 2 one instance (rows 5-9, cols 0-9);
    # category 3 one instance, unmapped when the categories carry imagenet_classes
    h = w = 20
    inst = {"a": _mask(h, w, 0, 5, 0, 20), "b": _mask(h, w, 10, 15, 0, 20), "crowd": _mask(h, w, 15, 20, 0, 20),
            "c2": _mask(h, w, 5, 10, 0, 10), "c3": _mask(h, w, 5, 10, 10, 20)}
    anns = []
    for k, (name, cat, crowd) in enumerate((("a", 1, 0), ("b", 1, 0), ("crowd", 1, 1), ("c2", 2, 0), ("c3", 3, 0))):
        m = inst[name]
        ys, xs = np.nonzero(m)
        anns.append({"id": k + 1, "image_id": 1, "category_id": cat, "iscrowd": crowd, "area": int(m.sum()),
                     "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)],
                     "segmentation": mask_to_rle(m)})
    cats = [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}, {"id": 3, "name": "three"}]
    if with_map:
        for c, members in zip(cats, ([5], [6, 7], [])):
            c["imagenet_classes"] = members
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}],
                                "annotations": anns, "categories": cats}))
    return path, inst


def test_evaluate_pairs_union_crowd_and_mapped_categories(tmp_path):
    path, inst = _coco(tmp_path)
    # category 1: instance a only -> IoU 100 / 200 (the crowd rows are not in the union);
    # category 2: exact -> 1; category 3 unmapped: not a pair, its result not scored for AP
    res = [make_result(1, 1, [0, 0, 20, 5], 0.9, rank=1, segmentation=mask_to_rle(inst["a"])),
           make_result(1, 2, [0, 5, 10, 10], 0.8, rank=2, segmentation=mask_to_rle(inst["c2"])),
           make_result(1, 3, [10, 5, 20, 10], 0.7, rank=3, segmentation=mask_to_rle(inst["c3"]))]
    rp = tmp_path / "res.json"
    rp.write_text(json.dumps(res))
    f = evaluate_results(str(rp), str(path))
    m = f["mask_gt_known"]
    assert f["mask_categories"] == [1, 2]
    assert m["n_pairs"] == 2 and m["n_missing"] == 0
    assert f["mask_miou_gt_known"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["iou50"] == 1.0
    # union of category 1: 200 / 400 px = 50 % (large); category 2: 50 / 400 = 12.5 % (medium)
    assert m["by_size"]["large (>25%)"] == {"n": 1, "miou": 0.5, "iou50": 1.0}
    assert m["by_size"]["medium (5-25%)"]["n"] == 1 and m["by_size"]["small (<5%)"]["n"] == 0
    assert "coco_segm" in f and "coco_bbox" in f
    # the same file scored on every category: category 3 joins (exact mask: IoU 1)
    f_all = evaluate_results(str(rp), str(path), categories="all")
    assert f_all["mask_gt_known"]["n_pairs"] == 3
    assert f_all["mask_miou_gt_known"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    table = format_table(f)
    assert "GT-known masks" in table and "2 mapped categories" in table and "medium (5-25%)" in table


def test_evaluate_mask_ap_restricted_to_mapped(tmp_path):
    path, inst = _coco(tmp_path)
    # exact masks for every mapped category: mask AP 1 (category 3's result is left out, not a false positive)
    res = [make_result(1, 1, [0, 0, 20, 5], 0.9, segmentation=mask_to_rle(inst["a"])),
           make_result(1, 1, [0, 10, 20, 15], 0.85, segmentation=mask_to_rle(inst["b"])),
           make_result(1, 2, [0, 5, 10, 10], 0.8, segmentation=mask_to_rle(inst["c2"]))]
    rp = tmp_path / "res.json"
    rp.write_text(json.dumps(res))
    f = evaluate_results(str(rp), str(path))
    assert f["coco_segm"]["AP"] == pytest.approx(1.0)
    assert f["coco_bbox"]["AP"] == pytest.approx(1.0)
    # without the map every category counts: category 3 has no result, AP drops to 2/3 of a category mean
    path2, _ = _coco(tmp_path, with_map=False)  # the same file, its categories without imagenet_classes
    f2 = evaluate_results(str(rp), str(path2))
    assert f2["mask_categories"] is None
    assert f2["coco_segm"]["AP"] == pytest.approx(2 / 3)
