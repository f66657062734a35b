"""Hand-worked tests of box IoU (both conventions), ILSVRC CLS-LOC / classification error, GT-known."""

from __future__ import annotations

import numpy as np
import pytest

from wsloc.evaluate import box_iou, clsloc_errors, describe_convention, gt_known_accuracy, image_clsloc_error


# ------------------------------------------------------------------ IoU

def test_iou_touching_boxes():
    a, b = [0, 0, 10, 10], [10, 0, 20, 10]
    assert box_iou(a, b, "continuous")[0, 0] == 0.0
    # devkit: both boxes 11 x 11, shared column x=10 is 1 x 11 -> 11 / (121 + 121 - 11)
    assert box_iou(a, b, "devkit")[0, 0] == pytest.approx(11 / 231)


def test_iou_nested_boxes():
    a, b = [0, 0, 10, 10], [2, 2, 6, 6]
    assert box_iou(a, b, "continuous")[0, 0] == pytest.approx(16 / 100)
    assert box_iou(a, b, "devkit")[0, 0] == pytest.approx(25 / 121)
    assert box_iou(b, a, "devkit")[0, 0] == pytest.approx(25 / 121)


def test_iou_disjoint_and_identical():
    a, b = [0, 0, 5, 5], [7, 7, 9, 9]
    for conv in ("devkit", "continuous"):
        assert box_iou(a, b, conv)[0, 0] == 0.0
        assert box_iou(a, a, conv)[0, 0] == 1.0


def test_iou_plus_one_flips_borderline():
    gt, pred = [0, 0, 9, 9], [0, 0, 9, 4]
    # continuous: 9*4 / 9*9 = 0.444 -> wrong; devkit: 10*5 / 10*10 = 0.5 -> right (>= 0.5)
    assert box_iou(pred, gt, "continuous")[0, 0] == pytest.approx(36 / 81)
    assert box_iou(pred, gt, "devkit")[0, 0] == 0.5
    classes, boxes = [3], [pred]
    assert image_clsloc_error(classes, boxes, [gt], [3], k=1, iou_convention="continuous") == (1.0, 0.0)
    assert image_clsloc_error(classes, boxes, [gt], [3], k=1, iou_convention="devkit") == (0.0, 0.0)


def test_iou_matrix_shape_and_unknown_convention():
    out = box_iou(np.zeros((3, 4)) + [0, 0, 1, 1], np.zeros((2, 4)) + [0, 0, 1, 1], "continuous")
    assert out.shape == (3, 2) and np.all(out == 1.0)
    with pytest.raises(ValueError, match="iou_convention"):
        box_iou([0, 0, 1, 1], [0, 0, 1, 1], "pascal")
    assert "+ 1" in describe_convention("devkit")


# ------------------------------------------------------------------ CLS-LOC

GT_BOXES = np.array([[0, 0, 50, 50], [100, 100, 200, 200]], float)
GT_LABELS = np.array([7, 7])


def test_multiple_gt_boxes_any_matches():
    # the guess matches only the second ground-truth box
    assert image_clsloc_error([7], [[100, 100, 200, 200]], GT_BOXES, GT_LABELS, k=1) == (0.0, 0.0)
    # between the two boxes: IoU < 0.5 with both
    assert image_clsloc_error([7], [[0, 0, 200, 200]], GT_BOXES, GT_LABELS, k=1) == (1.0, 0.0)


def test_wrong_class_with_perfect_box_is_an_error():
    assert image_clsloc_error([8], [[0, 0, 50, 50]], GT_BOXES, GT_LABELS, k=5) == (1.0, 1.0)


def test_fewer_than_five_guesses_and_ranks():
    classes = [8, 7]
    boxes = [[0, 0, 50, 50], [0, 0, 50, 50]]
    assert image_clsloc_error(classes, boxes, GT_BOXES, GT_LABELS, k=1) == (1.0, 1.0)
    assert image_clsloc_error(classes, boxes, GT_BOXES, GT_LABELS, k=5) == (0.0, 0.0)
    # right class at top-1 but a bad box, right class and box at rank 3
    classes = [7, 9, 7]
    boxes = [[300, 300, 400, 400], [0, 0, 50, 50], [1, 1, 50, 50]]
    assert image_clsloc_error(classes, boxes, GT_BOXES, GT_LABELS, k=1) == (1.0, 0.0)
    assert image_clsloc_error(classes, boxes, GT_BOXES, GT_LABELS, k=2) == (1.0, 0.0)
    assert image_clsloc_error(classes, boxes, GT_BOXES, GT_LABELS, k=5) == (0.0, 0.0)


def test_only_first_five_guesses_count():
    classes = [1, 2, 3, 4, 5, 7]
    boxes = [[0, 0, 50, 50]] * 6
    assert image_clsloc_error(classes, boxes, GT_BOXES, GT_LABELS, k=5) == (1.0, 1.0)
    assert image_clsloc_error(classes, boxes, GT_BOXES, GT_LABELS, k=6) == (0.0, 0.0)


def test_no_guesses_is_an_error():
    assert image_clsloc_error([], np.zeros((0, 4)), GT_BOXES, GT_LABELS, k=5) == (1.0, 1.0)


def test_box_of_another_gt_class_does_not_count():
    boxes = np.array([[0, 0, 50, 50], [100, 100, 200, 200]], float)
    labels = np.array([7, 9])
    # class 7 guessed with the box of the class-9 object; class 9 not guessed.
    # ILSVRC multi-class rule: mean over the image's 2 classes -> both terms 1
    assert image_clsloc_error([7], [[100, 100, 200, 200]], boxes, labels, k=5) == (1.0, 0.5)
    # one of the two classes localized -> 0.5
    assert image_clsloc_error([7, 3], [[0, 0, 50, 50], [0, 0, 1, 1]], boxes, labels, k=5) == (0.5, 0.5)


def test_image_level_class_without_box_cannot_be_localized():
    assert image_clsloc_error([7], [[0, 0, 5, 5]], np.zeros((0, 4)), [], gt_classes=[7], k=1) == (1.0, 0.0)
    loc, cls = image_clsloc_error([7], [[0, 0, 5, 5]], np.zeros((0, 4)), [], k=1)
    assert np.isnan(loc) and np.isnan(cls)


def test_clsloc_errors_means_over_images():
    out = clsloc_errors(
        guess_classes=[[7], [8, 7], [], [7]],
        guess_boxes=[[[0, 0, 50, 50]], [[0, 0, 50, 50], [0, 0, 50, 50]], np.zeros((0, 4)), [[0, 0, 1, 1]]],
        gt_boxes=[GT_BOXES] * 4, gt_labels=[GT_LABELS] * 4)
    # top-1 loc: right, wrong, wrong (no guess), wrong (bad box) -> 3/4
    assert out["top1_loc_error"] == 0.75
    assert out["top5_loc_error"] == 0.5
    assert out["top1_cls_error"] == 0.5
    assert out["top5_cls_error"] == 0.25
    assert out["n_images"] == 4 and out["iou_convention"] == "devkit"
    assert list(out["per_image"]["top5_loc_error"]) == [0, 0, 1, 1]


def test_gt_known_accuracy():
    acc, hits = gt_known_accuracy(
        [[0, 0, 50, 50], None, [0, 0, 9, 4], [0, 0, 9, 4]],
        [GT_BOXES, GT_BOXES, [[0, 0, 9, 9]], [[0, 0, 9, 9]]], iou_convention="devkit")
    assert list(hits) == [True, False, True, True] and acc == 0.75
    acc, hits = gt_known_accuracy([[0, 0, 9, 4]], [[[0, 0, 9, 9]]], iou_convention="continuous")
    assert acc == 0.0
