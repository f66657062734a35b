"""Overlays show the ground truth (issue 14): GT boxes in their own colour with the class name, and
the IoU of our box in each panel's title, in the convention the legend names."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from test_run_helpers import make_coco, tiny_classifier
from wsloc import viz
from wsloc.io import CocoDataset
from wsloc.run.overlay import best_iou, render_overlay, sample_gt

LEGEND = 22  # height of the legend band under the panels


def _gt(boxes, labels, label, names=None):
    labels = np.asarray(labels, np.int64)
    return {"boxes": np.asarray(boxes, np.float64).reshape(-1, 4), "labels": labels, "label": label,
            "names": names or {int(v): f"c{v}" for v in set(labels.tolist()) | {label}}}


def test_best_iou_uses_the_boxes_of_the_image_class():
    gt = _gt([[0, 0, 10, 10], [5, 5, 15, 15]], [1, 2], 2)
    assert best_iou([0, 0, 10, 10], gt, "continuous") == pytest.approx(25 / 175)
    assert best_iou([0, 0, 10, 10], gt, "devkit") == pytest.approx(36 / 206)  # +1 on every length
    gt["label"] = 7  # no box of the image's class: all boxes count
    assert best_iou([0, 0, 10, 10], gt, "continuous") == pytest.approx(1.0)
    assert best_iou([0, 0, 10, 10], None) is None and best_iou([0, 0, 1, 1], _gt([], [], 3)) is None


def _loc(box, h, w):
    mask = np.zeros((h, w), bool)
    mask[30:60, 40:90] = True
    c = SimpleNamespace(rank=1, name="thing", class_id=3, score=0.5, box=np.asarray(box, np.float64), mask=mask)
    return SimpleNamespace(classes=[c])


def test_overlay_draws_gt_boxes_and_titles_the_iou(monkeypatch):
    image = np.full((100, 120, 3), 128, np.uint8)
    maps = np.zeros((1, 10, 12), np.float32)
    titles = []
    grid = viz.grid
    monkeypatch.setattr(viz, "grid", lambda rows, **kw: (titles.append(kw["col_titles"]), grid(rows, **kw))[1])
    gt = _gt([[10, 20, 60, 80]], [3], 3, {3: "a"})
    with_gt = render_overlay(image, maps, _loc([40, 30, 90, 60], 100, 120), gt, convention="continuous")
    without = render_overlay(image, maps, _loc([40, 30, 90, 60], 100, 120), None)
    top = with_gt.shape[0] - LEGEND - 100  # the title band
    assert with_gt.shape == without.shape
    edge = with_gt[top + 32:top + 50, 59]  # right edge of the GT box (x1 = 60 -> column 59), below our box
    assert (edge == viz.GT_COLOR).all(axis=1).all()
    assert not (without[top + 32:top + 50, 59] == viz.GT_COLOR).all(axis=1).any()
    inter = (60 - 40) * (60 - 30)
    want = inter / (50 * 60 + 50 * 30 - inter)
    assert titles[0] == [f"1. thing 0.50 IoU {want:.2f}"] and titles[1] == ["1. thing 0.50"]
    assert (with_gt[-LEGEND:] != 255).any()  # the legend is drawn


def test_sample_gt_of_a_sample():
    ds_sample = SimpleNamespace(boxes=np.array([[1.0, 2, 3, 4]]), labels=np.array([5]), label=5)
    g = sample_gt(ds_sample, {5: "five"})
    assert g["names"] == {5: "five"} and g["label"] == 5 and g["boxes"].shape == (1, 4)
    assert sample_gt(SimpleNamespace(boxes=np.zeros((0, 4)), labels=np.zeros(0), label=None), {}) is None


def test_run_overlays_show_the_ground_truth(tmp_path):
    """The batch runner passes each overlay image's ground truth to the picture."""
    from wsloc.localizer import Localizer
    from wsloc.run import RunOptions, run_dataset

    ann = make_coco(tmp_path / "data", 2, bad=())
    ds = CocoDataset(ann)
    loc = Localizer(classifier=tiny_classifier(), device="cpu", top_k=2)
    out = tmp_path / "run"
    run_dataset(loc, ds, RunOptions(str(out), workers=0, segment_workers=0, overlays=1, progress=False))
    pngs = sorted((out / "overlays").iterdir())
    assert len(pngs) == 1
    pic = cv2.cvtColor(cv2.imread(str(pngs[0])), cv2.COLOR_BGR2RGB)
    top = pic.shape[0] - LEGEND - 48
    gt_edge = pic[top + 5:top + 16, 23]  # GT bbox [4, 4, 20, 16] -> xyxy [4, 4, 24, 20]: right edge column 23
    assert (gt_edge == viz.GT_COLOR).all(axis=1).sum() >= 5
