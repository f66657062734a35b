"""Results files, evaluate_results, COCO AP and the ``wsloc evaluate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsloc.boxes import mask_to_rle, rle_to_mask
from wsloc.cli import main as cli_main
from wsloc.errors import DatasetError
from wsloc.evaluate import (
    coco_ap,
    evaluate_results,
    group_guesses,
    load_results,
    make_result,
    write_results,
)
from wsloc.io import CocoDataset

IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-1300"


def _ann(tmp_path, images=None, annotations=None, categories=None, name="ann.json"):
    data = {
        "images": images if images is not None else [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 100, "label": 3},
            {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100, "label": 4},
            {"id": 3, "file_name": "c.jpg", "width": 100, "height": 100, "label": 3},
        ],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 4, "bbox": [0, 0, 9, 9], "area": 81, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 4, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 0},
            {"id": 4, "image_id": 3, "category_id": 3, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 0},
        ],
        "categories": categories if categories is not None else [{"id": i, "name": f"c{i}"} for i in range(6)],
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _res(tmp_path, results, name="res.json"):
    path = tmp_path / name
    path.write_text(json.dumps(results))
    return str(path)


# ------------------------------------------------------------------ results files

def test_make_write_load_roundtrip(tmp_path):
    r = make_result(1, 3, [10, 20, 50, 80], 0.9, rank=1, segmentation=mask_to_rle(np.ones((4, 4), bool)))
    assert r["bbox"] == [10.0, 20.0, 40.0, 60.0]
    path = tmp_path / "r.json"
    write_results(path, [r])
    back = load_results(str(path))
    assert back == [r]


def test_ranking_by_rank_else_score():
    res = [make_result(1, 5, [0, 0, 1, 1], 0.9, rank=2), make_result(1, 6, [0, 0, 1, 1], 0.1, rank=1),
           make_result(2, 5, [0, 0, 1, 1], 0.2), make_result(2, 6, [0, 0, 1, 1], 0.8),
           make_result(2, 3, [0, 0, 1, 1], 1.0, gt_known=True)]
    groups = group_guesses(res)
    assert list(groups[1].classes) == [6, 5]  # rank wins over score
    assert list(groups[2].classes) == [6, 5]  # score descending; the gt_known entry is no guess
    assert groups[2].gt_known[0]["category_id"] == 3
    with pytest.raises(DatasetError, match="mixes"):
        group_guesses([make_result(1, 5, [0, 0, 1, 1], 0.9, rank=1), make_result(1, 6, [0, 0, 1, 1], 0.1)])


# ------------------------------------------------------------------ evaluate_results

def test_evaluate_results_hand_worked(tmp_path):
    ann = _ann(tmp_path)
    res = [
        # image 1 (class 3, box [10, 10, 50, 50]): right at top-1
        make_result(1, 3, [10, 10, 50, 50], 0.9, rank=1),
        make_result(1, 2, [10, 10, 50, 50], 0.5, rank=2),
        # image 2 (class 4, two boxes): perfect box of the wrong class first, then class 4 at
        # rank 2 (a miss) and again, on the second box, at rank 3: a repeated class, which the
        # ILSVRC figures count once, at its best rank (issue 15); only three guesses
        make_result(2, 5, [50, 50, 90, 90], 0.9, rank=1),
        make_result(2, 4, [0, 0, 100, 100], 0.8, rank=2),
        make_result(2, 4, [51, 51, 90, 90], 0.7, rank=3),
        # image 3: no guesses at all (counts as an error); a GT-known guess only
        make_result(3, 3, [0, 0, 100, 100], 1.0, gt_known=True),
    ]
    f = evaluate_results(_res(tmp_path, res), ann, coco=False)
    assert f["n_images"] == 3 and f["n_evaluated"] == 3
    assert f["n_without_guesses"] == 1 and f["n_fewer_guesses"] == 2
    assert f["top1_loc_error"] == pytest.approx(2 / 3)
    assert f["top5_loc_error"] == pytest.approx(2 / 3)  # 1/3 if the repeat of class 4 counted
    assert f["n_repeated_guesses"] == 1 and "repeat a class" in f["warnings"][0]
    assert f["top1_cls_error"] == pytest.approx(2 / 3)
    assert f["top5_cls_error"] == pytest.approx(1 / 3)
    # GT-known: image 1 -> its class-3 guess (right); image 2 -> first class-4 guess, the
    # whole image (IoU with [50,50,90,90] < 0.5: miss); image 3 -> the flagged entry (right)
    assert f["gt_known_loc_acc"] == pytest.approx(2 / 3) and f["n_gt_known_missing"] == 0
    assert f["iou_convention"] == "devkit" and "+ 1" in f["iou_convention_description"]


def test_evaluate_results_convention_flip(tmp_path):
    ann = _ann(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 20, "height": 20, "label": 0}],
               annotations=[{"id": 1, "image_id": 1, "category_id": 0, "bbox": [0, 0, 9, 9]}])
    res = _res(tmp_path, [make_result(1, 0, [0, 0, 9, 4], 1.0)])
    assert evaluate_results(res, ann, coco=False)["top1_loc_error"] == 0.0
    assert evaluate_results(res, ann, iou_convention="continuous", coco=False)["top1_loc_error"] == 1.0


def test_evaluate_results_masks_and_coco(tmp_path):
    poly = [[10, 10, 50, 10, 50, 50, 10, 50]]  # 40 x 40 square
    ann = _ann(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64, "label": 1}],
               annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40],
                             "segmentation": poly, "area": 1600, "iscrowd": 0}],
               categories=[{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
    from pycocotools import mask as mask_utils
    gt_mask = rle_to_mask(mask_utils.merge(mask_utils.frPyObjects(poly, 64, 64)))
    pred = np.zeros((64, 64), bool)
    pred[:, :32] = gt_mask[:, :32]  # half of the object
    res = [make_result(1, 1, [10, 10, 50, 50], 0.9, segmentation=mask_to_rle(pred))]
    f = evaluate_results(_res(tmp_path, res), ann)
    assert f["mask_miou_gt_known"] == pytest.approx(pred.sum() / gt_mask.sum())
    assert f["coco_bbox"]["AP"] == pytest.approx(1.0)
    assert 0 <= f["coco_segm"]["AP"] < 1.0


def test_coco_ap_hand_worked_and_sparse_equals_stock(tmp_path):
    ds = CocoDataset(_ann(tmp_path))
    perfect = [make_result(1, 3, [10, 10, 50, 50], 0.9), make_result(2, 4, [0, 0, 9, 9], 0.9),
               make_result(2, 4, [50, 50, 90, 90], 0.8), make_result(3, 3, [0, 0, 100, 100], 0.7)]
    assert coco_ap(perfect, ds)["AP"] == pytest.approx(1.0)
    # class 3: a false positive scored above both true positives -> precisions 0, 1/2, 2/3 at
    # recalls 0, 1/2, 1; interpolated precision 2/3 at every recall. Class 4: no detection -> 0.
    fp = [make_result(1, 3, [60, 60, 99, 99], 0.95), make_result(1, 3, [10, 10, 50, 50], 0.9)]
    only3 = coco_ap(fp + [make_result(3, 3, [0, 0, 100, 100], 0.1)], ds)
    rng = np.random.default_rng(0)
    noisy = [make_result(int(i), int(c), [x, y, x + w, y + h], float(s))
             for i, c, x, y, w, h, s in zip(rng.integers(1, 4, 40), rng.integers(2, 6, 40), rng.uniform(0, 50, 40),
                                            rng.uniform(0, 50, 40), rng.uniform(5, 50, 40), rng.uniform(5, 50, 40),
                                            rng.random(40))] + perfect[:2]
    a, b = coco_ap(noisy, ds, sparse=True), coco_ap(noisy, ds, sparse=False)
    assert {k: a[k] for k in a} == {k: b[k] for k in b}
    assert 0 < a["AP"] < 1
    assert only3["AP50"] == pytest.approx((2 / 3 + 0) / 2)


# ------------------------------------------------------------------ bad input

def test_bad_results_are_named(tmp_path):
    ann = _ann(tmp_path)
    cases = [
        ([make_result(99, 3, [0, 0, 1, 1], 1.0), make_result(98, 3, [0, 0, 1, 1], 1.0)], "image ids.*98, 99"),
        ([make_result(1, 77, [0, 0, 1, 1], 1.0)], "category ids.*77"),
        ([{"image_id": 1, "category_id": 3, "bbox": [0, 0, -5, 4], "score": 1.0}], "negative size"),
        ([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 5], "score": 1.0}], "bbox"),
        ([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5]}], "lacks 'score'"),
        ({"image_id": 1}, "JSON list"),
    ]
    for results, pattern in cases:
        with pytest.raises(DatasetError, match=pattern):
            evaluate_results(_res(tmp_path, results), ann, coco=False)
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(DatasetError, match="bad.json.*not a results JSON"):
        evaluate_results(str(bad), ann, coco=False)


def test_annotation_file_that_is_not_coco(tmp_path):
    res = _res(tmp_path, [])
    not_coco = tmp_path / "list.json"
    not_coco.write_text(json.dumps([{"image_id": 1}]))
    with pytest.raises(DatasetError, match="list.json.*not a COCO"):
        evaluate_results(res, str(not_coco))
    no_images = tmp_path / "noimg.json"
    no_images.write_text(json.dumps({"annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match="missing key 'images'"):
        evaluate_results(res, str(no_images))
    with pytest.raises(DatasetError, match="folder"):
        evaluate_results(res, str(tmp_path))


# ------------------------------------------------------------------ CLI

def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    ann = _ann(tmp_path)
    res = _res(tmp_path, [make_result(1, 3, [10, 10, 50, 50], 0.9, rank=1)])
    out = tmp_path / "fig.json"
    assert cli_main(["evaluate", res, ann, "--out", str(out), "--iou-convention", "continuous"]) == 0
    text = capsys.readouterr().out
    assert "continuous" in text and "Top-5 localization error" in text and "COCO box AP" in text
    fig = json.loads(out.read_text())
    assert fig["iou_convention"] == "continuous"
    assert fig["top5_loc_error"] == pytest.approx(2 / 3) and fig["n_without_guesses"] == 2


def test_cli_bad_input_exit_code(tmp_path, capsys):
    ann = _ann(tmp_path)
    res = _res(tmp_path, [make_result(42, 3, [0, 0, 1, 1], 1.0)])
    assert cli_main(["evaluate", res, ann]) == 1
    assert "image ids not in the annotations: [42]" in capsys.readouterr().err


# ------------------------------------------------------------------ real data

@pytest.mark.shared_data
def test_imagenet_whole_image_boxes_top5(tmp_path, capsys):
    ann = IMAGENET / "annotations.json"
    if not ann.is_file():
        pytest.skip("../shared/data/imagenet-val-1300 is not present")
    data = json.loads(ann.read_text())
    rng = np.random.default_rng(0)
    results = []
    for im in data["images"][:-3]:  # the last three images get no guesses
        top5 = [int(c) for c in rng.choice(1000, 5, replace=False)]
        if rng.random() < 0.8 and im["label"] not in top5:
            top5[int(rng.integers(0, 5))] = im["label"]
        for rank, c in enumerate(top5, 1):
            results.append({"image_id": im["id"], "category_id": c, "bbox": [0, 0, im["width"], im["height"]],
                            "score": 1.0 - rank / 10, "rank": rank})
    res = _res(tmp_path, results)

    # independent count: devkit IoU of the whole-image box [0, 0, W, H] with each gt box
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    guesses = {}
    for r in results:
        guesses.setdefault(r["image_id"], []).append(r["category_id"])
    wrong = {1: 0, 5: 0}
    for im in data["images"]:
        W, H = im["width"], im["height"]
        ok = False
        for a in by_image.get(im["id"], []):
            x, y, w, h = a["bbox"]
            iw, ih = min(W, x + w) - max(0, x) + 1, min(H, y + h) - max(0, y) + 1
            inter = max(iw, 0) * max(ih, 0)
            iou = inter / ((W + 1) * (H + 1) + (w + 1) * (h + 1) - inter)
            ok |= a["category_id"] == im["label"] and iou >= 0.5
        for k in (1, 5):
            wrong[k] += not (ok and im["label"] in guesses.get(im["id"], [])[:k])

    out = tmp_path / "fig.json"
    assert cli_main(["evaluate", res, str(ann), "--no-coco", "--out", str(out)]) == 0
    assert "devkit" in capsys.readouterr().out
    fig = json.loads(out.read_text())
    n = len(data["images"])
    assert fig["n_images"] == n and fig["n_without_guesses"] == 3
    assert fig["top5_loc_error"] == pytest.approx(wrong[5] / n, abs=1e-12)
    assert fig["top1_loc_error"] == pytest.approx(wrong[1] / n, abs=1e-12)
    assert 0.2 < fig["top5_loc_error"] < 0.9
