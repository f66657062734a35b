"""wsloc.boxes_select: candidate boxes of hand-made masks and maps, the evidence selector on a stub
classifier whose logits are channel means, the oracle (issue 12, must-show 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wsloc.boxes_select import (FRACTIONS, VARIANTS, box_evidence, box_share, candidate_boxes, class_stats,
                                dedupe_boxes, evidence_inputs, oracle_box, rule_boxes, rule_names, score_boxes,
                                score_from_stats, select_box)
from wsloc.evaluate.iou import box_iou
from wsloc.models import Preprocess

H, W = 60, 80


def scene() -> tuple[np.ndarray, np.ndarray]:
    """A GraphCut-like mask with a big and a small blob, and a map at the image's resolution with a
    peak block (1.0), a shoulder block (0.35) beside it and a faint far blob (0.15)."""
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:50] = True  # 600 px: the largest component, box (20, 10, 50, 30)
    mask[40:45, 5:10] = True  # 25 px, box (5, 40, 10, 45)
    fmap = np.zeros((H, W), np.float32)
    fmap[12:28, 25:45] = 1.0  # peak, box (25, 12, 45, 28)
    fmap[12:28, 45:60] = 0.35  # shoulder touching it: at <= 0.35 one component (25, 12, 60, 28)
    fmap[50:55, 70:75] = 0.15  # far blob, box (70, 50, 75, 55)
    return mask, fmap


def test_rule_boxes_are_the_hand_derived_boxes():
    mask, fmap = scene()
    boxes = rule_boxes(mask, fmap, (H, W), fractions=(0.1, 0.3, 0.5))
    assert list(boxes) == rule_names((0.1, 0.3, 0.5))
    expect = {"mask_union": [5, 10, 50, 45], "mask_largest": [20, 10, 50, 30],
              "map0.10_largest": [25, 12, 60, 28], "map0.10_union": [25, 12, 75, 55],
              "map0.30_largest": [25, 12, 60, 28], "map0.30_union": [25, 12, 60, 28],
              "map0.50_largest": [25, 12, 45, 28], "map0.50_union": [25, 12, 45, 28],
              "whole": [0, 0, W, H]}
    for name, box in expect.items():
        np.testing.assert_array_equal(boxes[name], box, err_msg=name)
        assert boxes[name].dtype == np.float64


def test_candidates_deduplicated_and_named_by_their_rules():
    mask, fmap = scene()
    boxes, names = candidate_boxes(mask, fmap, fractions=(0.1, 0.3, 0.5), image_size=(H, W))
    assert boxes.shape == (6, 4) and boxes.dtype == np.float64
    assert names == ["mask_union", "mask_largest", "map0.10_largest+map0.30_largest+map0.30_union",
                     "map0.10_union", "map0.50_largest+map0.50_union", "whole"]
    assert len({tuple(b) for b in boxes}) == len(boxes)
    # the image size defaults to the mask's; no mask: only the map's rules and the whole image
    np.testing.assert_array_equal(candidate_boxes(mask, fmap, (0.1, 0.3, 0.5))[0], boxes)
    b2, n2 = candidate_boxes(None, fmap, (0.5,), image_size=(H, W))
    assert n2 == ["map0.50_largest+map0.50_union", "whole"]
    np.testing.assert_array_equal(b2, [[25, 12, 45, 28], [0, 0, W, H]])
    with pytest.raises(ValueError):
        candidate_boxes(None, fmap)


def test_coarse_map_is_brought_to_the_image():
    fmap = np.zeros((H // 4, W // 4), np.float32)
    fmap[3:7, 5:10] = 1.0  # image pixels rows 12..28, cols 20..40
    box = rule_boxes(None, fmap, (H, W), fractions=(0.5,))["map0.50_largest"]
    np.testing.assert_allclose(box, [20, 12, 40, 28], atol=2)


def test_flat_map_and_empty_mask_give_the_whole_image():
    boxes = rule_boxes(np.zeros((H, W), bool), np.zeros((5, 5)), (H, W), fractions=(0.2,))
    for name, box in boxes.items():
        np.testing.assert_array_equal(box, [0, 0, W, H], err_msg=name)
    assert dedupe_boxes(boxes)[1] == ["+".join(rule_names((0.2,)))]


class ChannelMean(nn.Module):
    """Stub classifier: the logit of class c is the mean of input channel c (3 classes)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def bright_square():
    """A black 64 x 64 image with a red 16 x 16 square at (24, 8)-(40, 24); candidates: the square, a
    box four times its area around it, a box elsewhere, the whole image (the square is index 1)."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:24, 24:40, 0] = 255
    boxes = np.array([[16, 0, 48, 32], [24, 8, 40, 24], [0, 40, 24, 64], [0, 0, 64, 64]], np.float64)
    return image, boxes


PRE = Preprocess((32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_evidence_inputs_crops_then_masked():
    image, boxes = bright_square()
    x = evidence_inputs(image, boxes, PRE)
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[1, 0], torch.ones(32, 32))  # the square's crop is all red
    assert float(x[5, 0].sum()) == 0.0  # the square masked out: no red left
    assert float(x[6, 0].sum()) > 0  # a box elsewhere masked: the square is still there
    assert float(x[7].abs().sum()) == 0.0  # the whole image masked: the mean everywhere


def test_selector_picks_the_crop_holding_the_bright_square():
    image, boxes = bright_square()
    ev = box_evidence(ChannelMean(), image, boxes, PRE)
    assert ev.crop.shape == ev.masked.shape == (4, 3) and (ev.inputs, ev.passes) == (8, 1)
    assert box_evidence(ChannelMean(), image, boxes, PRE, max_batch=3).passes == 3
    for variant in ("logit_diff", "prob_diff", "logprob_diff", "crop_logit", "prob_product"):
        s = score_boxes(ev, 0, variant)
        assert select_box(s) == 1, (variant, s)
    s = score_boxes(ev, 0, "logit_diff")
    np.testing.assert_allclose(s, [0.25, 1.0, -1 / 16, 1 / 16], atol=1e-3)  # hand-derived
    # a strong enough reward for area makes the whole image win: the area term counts
    assert select_box(score_boxes(ev, 0, "logit_diff", boxes, (64, 64), area_weight=2.0)) == 3


def test_score_variants_hand_values():
    zc, lc = np.array([2.0, 0.0]), np.array([3.0, 1.0])
    zm, lm = np.array([0.0, 0.0]), np.array([1.0, 2.0])
    np.testing.assert_allclose(score_from_stats(zc, lc, zm, lm, "logit_diff"), [2.0, 0.0])
    np.testing.assert_allclose(score_from_stats(zc, lc, zm, lm, "logprob_diff"), [0.0, 1.0])
    np.testing.assert_allclose(score_from_stats(zc, lc, zm, lm, "prob_diff"),
                               [np.exp(-1) - np.exp(-1), np.exp(-1) - np.exp(-2)])
    np.testing.assert_allclose(score_from_stats(zc, lc, zm, lm, "masked_drop"), [0.0, 0.0])
    np.testing.assert_allclose(score_from_stats(zc, lc, zm, lm, "logit_diff", np.array([0.5, 0.1]), -2.0),
                               [1.0, -0.2])
    assert set(VARIANTS) >= {"logit_diff", "prob_diff"} and FRACTIONS
    with pytest.raises(ValueError):
        score_from_stats(zc, lc, zm, lm, "nope")
    with pytest.raises(ValueError):
        score_from_stats(zc, lc, zm, lm, "logit_diff", area_weight=1.0)


def test_class_stats_and_share():
    z = np.array([[0.0, np.log(3.0)], [5.0, 5.0]])
    logit, lse = class_stats(z, 1)
    np.testing.assert_allclose(logit, [np.log(3.0), 5.0])
    np.testing.assert_allclose(lse, [np.log(4.0), 5.0 + np.log(2.0)])
    np.testing.assert_allclose(box_share([[0, 0, 10, 5], [0, 0, 20, 10]], (10, 20)), [0.25, 1.0])


def test_select_box_ignores_nan_and_takes_the_first_tie():
    assert select_box([np.nan, 1.0, 3.0, 3.0]) == 2
    with pytest.raises(ValueError):
        select_box([])


def test_oracle_picks_the_max_iou_candidate():
    boxes = np.array([[0, 0, 50, 50], [10, 10, 40, 40], [12, 12, 30, 30], [60, 60, 90, 90]], np.float64)
    gt = np.array([[11, 11, 31, 31], [70, 70, 75, 75]], np.float64)
    i, iou = oracle_box(boxes, gt, "devkit")
    best = box_iou(boxes, gt, "devkit").max(axis=1)
    assert i == 2 == int(np.argmax(best)) and iou == pytest.approx(best[2])
    assert oracle_box(boxes, gt[1:], "devkit")[0] == 3
    assert oracle_box(boxes, np.zeros((0, 4)), "devkit") == (0, 0.0)


def test_select_box_keeps_the_preferred_box_within_the_margin():
    s = [0.5, 0.8, 0.2]
    assert select_box(s, prefer=0) == 1  # margin 0: the best wins
    assert select_box(s, prefer=0, margin=0.3) == 0  # 0.8 is not more than 0.3 above 0.5
    assert select_box(s, prefer=0, margin=0.29) == 1
    assert select_box(s, prefer=1, margin=5.0) == 1
    assert select_box([np.nan, 0.1], prefer=0) == 1


def test_bench_script_skips_without_data(tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_box_select.py"
    spec = importlib.util.spec_from_file_location("bench_box_select", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "SETS", {k: tmp_path / "absent" / "annotations.json" for k in bench.SETS})
    assert bench.main([]) == 0
    assert capsys.readouterr().out.startswith("skipped")
