"""wsloc's one vocabulary: box IoU (two named conventions), map normalisation, pointing game."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from wsloc.evaluate.iou import box_iou, box_iou_broadcast


def _random_boxes(rng, n: int) -> np.ndarray:
    xy = rng.uniform(0, 100, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(0, 50, (n, 2))], 1)


def test_box_iou_hand_values_in_both_conventions():
    a, b = [0, 0, 9, 9], [5, 5, 14, 14]
    # continuous: each box 9 x 9 = 81, overlap [5, 9] x [5, 9] = 4 x 4 = 16, union 81 + 81 - 16 = 146.
    assert box_iou(a, b, "continuous")[0, 0] == pytest.approx(16 / 146)
    # devkit: every length + 1: each box 10 x 10 = 100, overlap 5 x 5 = 25, union 200 - 25 = 175.
    assert box_iou(a, b, "devkit")[0, 0] == pytest.approx(25 / 175)
    # boxes that only touch (x1 == x0'): no overlap in continuous pixels, one shared column in the devkit's.
    # devkit: [0, 4] x [0, 4] is 5 x 5 = 25 and so is [4, 8] x [0, 4]; overlap 1 x 5 = 5; 5 / 45.
    assert box_iou([0, 0, 4, 4], [4, 0, 8, 4], "continuous")[0, 0] == 0.0
    assert box_iou([0, 0, 4, 4], [4, 0, 8, 4], "devkit")[0, 0] == pytest.approx(5 / 45)
    # a degenerate pair has no union in the continuous rule: IoU 0, never NaN.
    assert box_iou([1, 1, 1, 1], [1, 1, 1, 1], "continuous")[0, 0] == 0.0
    assert box_iou([1, 1, 1, 1], [1, 1, 1, 1], "devkit")[0, 0] == 1.0  # one pixel, both boxes


def test_box_iou_needs_a_named_convention():
    with pytest.raises(TypeError):
        box_iou([0, 0, 1, 1], [0, 0, 1, 1])  # no default: every caller says which rule
    with pytest.raises(ValueError, match="pascal"):
        box_iou([0, 0, 1, 1], [0, 0, 1, 1], "pascal")


def test_box_iou_agrees_with_torchvision():
    rng = np.random.default_rng(3)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 20)
    tv = torchvision.ops.box_iou
    expected = tv(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b, "continuous"), expected, rtol=1e-12, atol=1e-15)
    # the devkit rule is torchvision's on boxes whose x1, y1 grow by one pixel
    plus = np.array([0.0, 0.0, 1.0, 1.0])
    expected = tv(torch.from_numpy(a + plus), torch.from_numpy(b + plus)).numpy()
    np.testing.assert_allclose(box_iou(a, b, "devkit"), expected, rtol=1e-12, atol=1e-15)
    assert box_iou(a, np.zeros((0, 4)), "devkit").shape == (30, 0)


def test_box_iou_broadcast_is_box_iou_on_paired_boxes():
    rng = np.random.default_rng(4)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 7)
    for conv in ("devkit", "continuous"):
        full = box_iou(a, b, conv)
        np.testing.assert_array_equal(box_iou_broadcast(a, b, conv), np.diag(full))
        np.testing.assert_array_equal(box_iou_broadcast(a[:, None], b[None], conv), full)
