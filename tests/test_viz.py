"""Overlays and grids: exact pixels where boxes, outlines and heatmaps go."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsloc import viz


def test_overlay_plain_copy_and_alpha_extremes():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    keep = img.copy()
    out = viz.overlay(img)
    assert np.array_equal(out, img) and out is not img
    sal = rng.random((5, 6)).astype(np.float32)
    assert np.array_equal(viz.overlay(img, sal, alpha=0.0), img)
    assert np.array_equal(viz.overlay(img, sal, alpha=1.0), viz.heatmap(sal, (20, 30)))
    half = viz.overlay(img, sal, alpha=0.5).astype(int)
    expect = (img.astype(int) + viz.heatmap(sal, (20, 30)).astype(int)) / 2
    assert np.abs(half - expect).max() <= 1
    assert np.array_equal(img, keep)  # the input is not modified


def test_heatmap_jet_ends():
    sal = np.array([[0.0, 1.0], [0.5, 0.25]])
    h = viz.heatmap(sal)
    assert h.shape == (2, 2, 3) and h.dtype == np.uint8
    lo, hi = h[0, 0].astype(int), h[0, 1].astype(int)
    assert lo[2] > 100 and lo[0] < 20  # blue at the minimum
    assert hi[0] > 100 and hi[2] < 20  # red at the maximum
    assert np.array_equal(viz.heatmap(np.full((3, 3), 7.0)), viz.heatmap(np.zeros((3, 3))))  # constant -> low


def test_boxes_on_the_border_pixels_and_gt_in_another_colour():
    img = np.zeros((40, 40, 3), np.uint8)
    # covers columns 2..9 and rows 3..7 (continuous xyxy)
    out = viz.overlay(img, boxes=np.array([[2, 3, 10, 8]]), gt_boxes=np.array([[20, 20, 30, 35]]))
    box, gt = np.array(viz.BOX_COLOR), np.array(viz.GT_COLOR)
    for y, x in [(3, 2), (3, 9), (7, 2), (7, 9), (5, 2), (3, 5)]:
        assert np.array_equal(out[y, x], box), (y, x)
    for y, x in [(2, 2), (8, 5), (5, 10), (5, 5)]:
        assert np.array_equal(out[y, x], [0, 0, 0]), (y, x)
    assert np.array_equal(out[20, 20], gt) and np.array_equal(out[34, 29], gt)
    assert np.array_equal(out[27, 25], [0, 0, 0]) and np.array_equal(out[35, 30], [0, 0, 0])


def test_label_text_and_label_count():
    img = np.zeros((100, 160, 3), np.uint8)
    out = viz.overlay(img, boxes=np.array([[40, 50, 120, 90]]), labels=["tabby"])
    above = out[30:50, 40:120]
    assert (above == np.array(viz.BOX_COLOR)).all(axis=2).sum() > 100  # the label's filled background
    assert (above == 0).all(axis=2).sum() > 10  # its black text
    with pytest.raises(ValueError, match="labels"):
        viz.overlay(img, boxes=np.array([[0, 0, 5, 5]]), labels=["a", "b"])


def test_mask_outline():
    img = np.zeros((30, 30, 3), np.uint8)
    mask = np.zeros((30, 30), bool)
    mask[10:20, 5:15] = True
    out = viz.overlay(img, mask=mask)
    colour = np.array(viz.MASK_COLOR)
    assert np.array_equal(out[10, 5], colour) and np.array_equal(out[19, 14], colour)
    assert np.array_equal(out[15, 10], [0, 0, 0]) and np.array_equal(out[9, 5], [0, 0, 0])
    with pytest.raises(ValueError, match="mask"):
        viz.overlay(img, mask=mask[:10])


def test_grid_layout_without_and_with_titles():
    a = np.full((10, 20, 3), 50, np.uint8)
    b = np.full((10, 20, 3), 200, np.uint8)
    g = viz.grid([[a, b, a], [b, None]], gap=2)
    assert g.shape == (22, 64, 3)
    assert (g[0:10, 0:20] == 50).all() and (g[0:10, 22:42] == 200).all() and (g[12:22, 0:20] == 200).all()
    assert (g[12:22, 22:42] == 255).all() and (g[:, 20:22] == 255).all()  # blank cell and gaps are white
    t = viz.grid([[a, b]], row_titles=["image"], col_titles=["m1", "m2"])
    assert t.shape[0] > 10 and t.shape[1] > 42
    assert (t[-10:, -20:] == 200).all()
    small = viz.grid([[np.zeros((40, 40), np.float32)]], cell=(8, 8))  # float map -> heatmap, resized
    assert small.shape == (8, 8, 3)
    with pytest.raises(ValueError, match="column titles"):
        viz.grid([[a, b]], col_titles=["only one"])


def test_save_png_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = viz.save_png(tmp_path / "sub" / "x.png", img)
    back = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, img)
