"""Map-based metrics: MaxBoxAcc (V1/V2), PxAP, mask IoU and the pointing game.

Hand-worked cases plus agreement with direct, slow implementations of the definitions
(per-threshold ``cv2.findContours`` / ``cv2.connectedComponentsWithStats``) written here.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from wsloc.errors import DatasetError
from wsloc.evaluate import (
    box_accuracy_curves,
    mask_iou_curve,
    max_box_acc,
    max_box_acc_v2,
    pointing_game,
    pxap,
    threshold_grid,
)

# Two blobs: A (4 px, rows 1-2, cols 1-2) at 9, B (2 px, rows 3-4, col 4) at 5.
BLOBS = np.array([[0, 0, 0, 0, 0],
                  [0, 9, 9, 0, 0],
                  [0, 9, 9, 0, 0],
                  [0, 0, 0, 0, 5],
                  [0, 0, 0, 0, 5]], float)
BOX_A = [1, 1, 3, 3]
BOX_B = [4, 3, 5, 5]


# ------------------------------------------------------------------ slow references

def _norm(m):
    m = np.asarray(m, np.float64)
    lo, hi = m.min(), m.max()
    return np.zeros_like(m) if hi <= lo else (m - lo) / (hi - lo)


def _iou(b, g, plus):
    iw = max(0.0, min(b[2], g[2]) - max(b[0], g[0]) + plus)
    ih = max(0.0, min(b[3], g[3]) - max(b[1], g[1]) + plus)
    inter = iw * ih
    union = (b[2] - b[0] + plus) * (b[3] - b[1] + plus) + (g[2] - g[0] + plus) * (g[3] - g[1] + plus) - inter
    return inter / union if union > 0 else 0.0


def _slow_box_correct(maps, gts, thresholds, deltas, multi, plus):
    out = np.zeros((len(deltas), len(maps), len(thresholds)), bool)
    for i, m in enumerate(maps):
        m = _norm(m)
        for k, tau in enumerate(thresholds):
            mask = (m >= tau).astype(np.uint8)
            if multi:
                contours = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
                boxes = [(x, y, x + w, y + h) for x, y, w, h in map(cv2.boundingRect, contours)]
            else:
                n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
                boxes = []
                if n > 1:
                    first = np.full(n, labels.size)
                    ids, idx = np.unique(labels.ravel(), return_index=True)
                    first[ids] = idx
                    areas = stats[1:, cv2.CC_STAT_AREA]
                    cand = np.nonzero(areas == areas.max())[0] + 1
                    j = cand[np.argmin(first[cand])]  # equal sizes: first in raster order
                    x, y, w, h = stats[j, :4]
                    boxes = [(x, y, x + w, y + h)]
            best = max([_iou(b, g, plus) for b in boxes for g in gts[i]], default=0.0)
            out[:, i, k] = [best >= d for d in deltas]
    return out


def _slow_pxap(maps, gts, thresholds):
    TP, FP = [], []
    for tau in thresholds:
        tp = fp = 0
        for m, g in zip(maps, gts):
            pred = _norm(m) >= tau
            tp += int((pred & g).sum())
            fp += int((pred & ~g).sum())
        TP.append(tp)
        FP.append(fp)
    npos = sum(int(g.sum()) for g in gts)
    terms = []
    for i in range(len(thresholds)):
        if TP[i] + FP[i] == 0:
            continue
        r_next = TP[i + 1] / npos if i + 1 < len(thresholds) else 0.0
        terms.append(TP[i] / (TP[i] + FP[i]) * (TP[i] / npos - r_next))
    precision = [tp / (tp + fp) if tp + fp else np.nan for tp, fp in zip(TP, FP)]
    return math.fsum(terms), precision, [tp / npos for tp in TP]


def _random_case(rng, n):
    maps, gts = [], []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(12, 30, 2))
        m = cv2.GaussianBlur(rng.random((h, w)), (0, 0), float(rng.uniform(0.4, 2.5)))
        maps.append(m)
        # ground truth: boxes of the map's own components at a random threshold, jittered
        mask = (_norm(m) >= rng.uniform(0.3, 0.8)).astype(np.uint8)
        contours = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
        boxes = [[x + int(rng.integers(-1, 2)), y, x + bw, y + bh + int(rng.integers(-1, 2))]
                 for x, y, bw, bh in map(cv2.boundingRect, contours)][:3]
        gts.append(np.array(boxes, float).reshape(-1, 4))
    return maps, gts


# ------------------------------------------------------------------ MaxBoxAcc

def test_threshold_grid():
    assert np.array_equal(threshold_grid(0.25), [0, 0.25, 0.5, 0.75])
    assert len(threshold_grid(0.01)) == 100 and len(threshold_grid(0.001)) == 1000
    assert np.array_equal(threshold_grid(0.001), np.arange(0, 1, 0.001))
    with pytest.raises(ValueError):
        threshold_grid(0)


def test_maxboxacc_hand_worked():
    maps, gts = [BLOBS, BLOBS], [[BOX_B], [BOX_A]]
    for conv in ("continuous", "devkit"):
        v2 = max_box_acc_v2(maps, gts, step=0.25, iou_convention=conv)
        # tau=0: whole image (IoU 2/25 resp. 4/25); tau=.25,.5: A and B; tau=.75: only A
        assert np.array_equal(v2["accuracy"][1], [0, 1, 1, 0.5])
        assert v2["per_iou_threshold"] == {30: 1.0, 50: 1.0, 70: 1.0} and v2["value"] == 1.0
        assert v2["best_threshold"][50] == 0.25 and v2["step"] == 0.25
        v1 = max_box_acc(maps, gts, step=0.25, iou_convention=conv)
        # the largest component is A at every tau > 0: image 1 (gt B) never right
        assert np.array_equal(v1["accuracy"][0], [0, 0.5, 0.5, 0.5])
        assert v1["value"] == 0.5 and v1["per_iou_threshold"] == {50: 0.5}


def test_maxboxacc_empty_mask_and_constant_map():
    const = np.full((4, 6), 3.0)
    out = box_accuracy_curves([const], [[[0, 0, 6, 4]]], step=0.25, iou_convention="continuous",
                              return_per_image=True)
    # a constant map normalises to zeros: full box at tau=0, empty mask (wrong) above
    assert np.array_equal(out["correct"][:, 0], [[True, False, False, False]] * 3)


def test_maxboxacc_v1_equal_sizes_first_in_raster_order():
    m = np.zeros((6, 6))
    m[0, 4:6] = 1  # top right, first in raster order
    m[4, 0:2] = 1  # bottom left, same size
    right = max_box_acc([m], [[[4, 0, 6, 1]]], step=0.5, iou_convention="continuous")
    wrong = max_box_acc([m], [[[0, 4, 2, 5]]], step=0.5, iou_convention="continuous")
    assert np.array_equal(right["accuracy"][0], [0, 1]) and np.array_equal(wrong["accuracy"][0], [0, 0])
    both = max_box_acc_v2([m], [[[0, 4, 2, 5]]], step=0.5, iou_convention="continuous")
    assert np.array_equal(both["accuracy"][:, 1], [1, 1, 1])


def test_maxboxacc_devkit_plus_one_on_contour_boxes():
    m = np.zeros((10, 10))
    m[0:5, 0:10] = 1  # component box [0, 0, 10, 5]
    gt = [[0, 0, 10, 9]]  # continuous IoU 50/90 = 0.556; devkit 11*6 / 11*10 = 0.6
    c = box_accuracy_curves([m], [gt], step=0.5, iou_thresholds=(0.58,), iou_convention="continuous")
    d = box_accuracy_curves([m], [gt], step=0.5, iou_thresholds=(0.58,), iou_convention="devkit")
    assert c["accuracy"][0, 1] == 0.0 and d["accuracy"][0, 1] == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_maxboxacc_matches_slow_definition(seed):
    rng = np.random.default_rng(seed)
    maps, gts = _random_case(rng, 6)
    t = threshold_grid(0.02)
    for conv, plus in (("devkit", 1.0), ("continuous", 0.0)):
        fast = box_accuracy_curves(maps, gts, step=0.02, iou_convention=conv, return_per_image=True)
        slow = _slow_box_correct(maps, gts, t, [0.3, 0.5, 0.7], True, plus)
        assert slow.any() and not slow.all()
        assert np.array_equal(fast["correct"], slow)
        assert np.array_equal(fast["accuracy"], slow.mean(axis=1))
        fast1 = box_accuracy_curves(maps, gts, step=0.02, iou_thresholds=(50,), multi_contour=False,
                                    iou_convention=conv, return_per_image=True)
        assert np.array_equal(fast1["correct"], _slow_box_correct(maps, gts, t, [0.5], False, plus))


def test_maxboxacc_explicit_thresholds_above_zero():
    rng = np.random.default_rng(7)
    maps, gts = _random_case(rng, 5)
    dots = np.zeros((12, 12))
    dots[2, 5] = dots[8, 1] = 1.0  # two 1-pixel components: V1 takes (2, 5), first in raster order
    maps.append(dots)
    gts.append(np.array([[5, 2, 6, 3]], float))
    t = [0.2, 0.45, 0.7]
    for multi, deltas in ((True, [0.3, 0.5, 0.7]), (False, [0.5])):
        fast = box_accuracy_curves(maps, gts, thresholds=t, iou_thresholds=deltas, multi_contour=multi,
                                   return_per_image=True)
        assert fast["step"] is None and np.array_equal(fast["thresholds"], t)
        assert np.array_equal(fast["correct"], _slow_box_correct(maps, gts, t, deltas, multi, 1.0))


def test_maxboxacc_batches_and_workers_agree():
    rng = np.random.default_rng(3)
    maps = [cv2.GaussianBlur(rng.random((20, 24)), (0, 0), 1.5) for _ in range(5)]
    maps.append(rng.random((16, 24)))  # uniform noise: many components
    maps.append(cv2.GaussianBlur(rng.random((18, 31)), (0, 0), 1.0))  # another width
    gts = [[[2, 3, 12, 15], [5, 5, 20, 14]]] * 7
    a = box_accuracy_curves(maps, gts, step=0.05, return_per_image=True, workers=1)
    b = box_accuracy_curves(maps, gts, step=0.05, return_per_image=True, workers=2)
    assert np.array_equal(a["correct"], b["correct"])
    t = threshold_grid(0.05)
    assert np.array_equal(a["correct"], _slow_box_correct(maps, gts, t, [0.3, 0.5, 0.7], True, 1.0))


def test_maxboxacc_bad_input():
    with pytest.raises(DatasetError, match="NaN"):
        max_box_acc_v2([np.array([[0, np.nan], [1, 2]])], [[[0, 0, 1, 1]]])
    with pytest.raises(DatasetError, match="gt_boxes"):
        max_box_acc_v2([np.zeros((3, 3))], [])


# ------------------------------------------------------------------ PxAP and mask IoU

def test_pxap_and_miou_hand_worked():
    m = np.array([[1.0, 0.5], [0.25, 0.0]])
    g = np.array([[True, False], [True, False]])
    out = pxap([m], [g], step=0.5)  # thresholds 0, 0.5 and 1.0
    assert np.array_equal(out["thresholds"], [0, 0.5, 1.0])
    assert np.allclose(out["precision"], [0.5, 0.5, 1.0]) and np.allclose(out["recall"], [1, 0.5, 0.5])
    assert out["pxap"] == pytest.approx(0.5 * 0.5 + 0.5 * 0 + 1.0 * 0.5)
    iou = mask_iou_curve([m], [g], step=0.5)
    assert np.allclose(iou["miou"], [2 / 4, 1 / 3, 1 / 2])
    assert iou["best_iou"] == 0.5 and iou["best_threshold"] == 0.0


def test_pxap_perfect_map_and_ignore():
    g = np.zeros((8, 8), bool)
    g[2:5, 3:7] = True
    assert pxap([g.astype(float)], [g], step=0.1)["pxap"] == 1.0
    m = g.astype(float)
    m[0, 0] = 1.0  # a false positive at the top ...
    assert pxap([m], [g], step=0.1)["pxap"] < 1.0
    ign = np.zeros_like(g)
    ign[0, 0] = True  # ... that is ignored
    assert pxap([m], [g], step=0.1, ignore_masks=[ign])["pxap"] == 1.0
    with pytest.raises(DatasetError, match="no foreground"):
        pxap([m], [np.zeros_like(g)])
    with pytest.raises(DatasetError, match="shape"):
        pxap([m], [np.zeros((3, 3), bool)])


@pytest.mark.parametrize("seed", [0, 1])
def test_pxap_matches_slow_definition(seed):
    rng = np.random.default_rng(seed)
    maps, gts = [], []
    for _ in range(4):
        h, w = (int(v) for v in rng.integers(10, 25, 2))
        m = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 1.5)
        maps.append(m)
        gts.append(_norm(cv2.GaussianBlur(rng.random((h, w)), (0, 0), 2.0) + m) > 0.55)
    t = np.append(threshold_grid(0.01), 1.0)
    fast = pxap(maps, gts, step=0.01)
    ap, precision, recall = _slow_pxap(maps, gts, t)
    assert 0 < ap < 1
    assert fast["pxap"] == ap
    assert np.array_equal(fast["precision"], precision, equal_nan=True)
    assert np.array_equal(fast["recall"], recall)
    curve = mask_iou_curve(maps, gts, step=0.01)
    k = 37
    slow = np.mean([((_norm(m) >= t[k]) & g).sum() / ((_norm(m) >= t[k]) | g).sum() for m, g in zip(maps, gts)])
    assert curve["miou"][k] == pytest.approx(slow, abs=1e-15)


# ------------------------------------------------------------------ pointing game

def _peak_map(r, c, shape=(40, 40)):
    m = np.zeros(shape)
    m[r, c] = 1.0
    return m


def test_pointing_game_tolerance_and_classes():
    m = _peak_map(20, 20)
    at15 = np.zeros((40, 40), bool)
    at15[29, 32] = True  # 9^2 + 12^2 = 15^2: within the tolerance
    at16 = np.zeros((40, 40), bool)
    at16[20, 36] = True
    out = pointing_game([m, m, m, m], gt_masks=[at15, at15, at16, at16], labels=[0, 0, 0, 1])
    assert list(out["hits"]) == [True, True, False, False]
    assert out["per_class"] == {0: pytest.approx(2 / 3), 1: 0.0}
    assert out["accuracy"] == pytest.approx(1 / 3) and out["overall"] == 0.5
    assert pointing_game([m], gt_masks=[at16], tolerance=16)["accuracy"] == 1.0
    assert pointing_game([m], gt_masks=[at15], tolerance=14.9)["accuracy"] == 0.0


def test_pointing_game_boxes_ties_and_skips():
    m = _peak_map(20, 20)
    # box covering columns 36..39 (centres 36.5..39.5), rows 18..21: nearest pixel (20, 36) -> 16
    assert pointing_game([m], gt_boxes=[[[36, 18, 40, 22]]])["accuracy"] == 0.0
    assert pointing_game([m], gt_boxes=[[[35, 18, 40, 22]]])["accuracy"] == 1.0  # (20, 35) -> 15
    tie = np.zeros((40, 40))
    tie[0, 39] = tie[39, 0] = 1.0  # two maxima: the first in raster order (0, 39) is the point
    out = pointing_game([tie], gt_boxes=[[[30, 0, 40, 5]]], tolerance=0)
    assert out["accuracy"] == 1.0 and list(out["points"][0]) == [0, 39]
    out = pointing_game([m, m], gt_masks=[None, np.zeros((40, 40), bool)], gt_boxes=[[[0, 0, 40, 40]], []])
    assert out["n_images"] == 1 and out["n_skipped"] == 1 and out["accuracy"] == 1.0
