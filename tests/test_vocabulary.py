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


def test_minmax_and_peak_normalisation_by_hand():
    from wsloc.normalize import normalize_maps

    m = np.array([[1.0, 3.0], [5.0, 9.0]])
    np.testing.assert_array_equal(normalize_maps(m, "minmax"), [[0, 0.25], [0.5, 1]])  # (s - 1) / 8
    np.testing.assert_array_equal(normalize_maps(m, "peak"), [[1 / 9, 3 / 9], [5 / 9, 1]])  # s / 9
    signed = np.array([[-2.0, 0.0], [1.0, 4.0]])
    np.testing.assert_array_equal(normalize_maps(signed, "peak"), [[0, 0], [0.25, 1]])  # negatives clipped
    np.testing.assert_array_equal(normalize_maps(signed, "minmax"), [[0, 1 / 3], [0.5, 1]])  # (s + 2) / 6
    # each map of a batch on its own; a constant map and a map without a positive value give zeros
    batch = np.stack([m, np.full((2, 2), 7.0), -np.abs(m)]).astype(np.float32)
    mm, pk = normalize_maps(batch, "minmax"), normalize_maps(batch, "peak")
    assert mm.dtype == np.float32 and pk.dtype == np.float32
    np.testing.assert_array_equal(mm[0], [[0, 0.25], [0.5, 1]])
    np.testing.assert_array_equal(mm[1], np.zeros((2, 2)))
    np.testing.assert_array_equal(pk[1], np.ones((2, 2)))
    np.testing.assert_array_equal(pk[2], np.zeros((2, 2)))
    assert normalize_maps(np.array([[0, 2], [4, 8]]), "minmax").dtype == np.float64  # integers -> float64
    with pytest.raises(ValueError, match="rule"):
        normalize_maps(m, "zscore")


def test_normalisation_is_the_same_on_torch_and_numpy():
    from wsloc.normalize import normalize_maps

    rng = np.random.default_rng(5)
    maps = rng.normal(size=(2, 3, 6, 5)).astype(np.float32)
    maps[0, 1] = -1.0  # no positive value
    maps[1, 2] = 0.5  # constant
    for rule in ("minmax", "peak"):
        out = normalize_maps(torch.from_numpy(maps), rule)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), normalize_maps(maps, rule), rtol=0, atol=1e-7)
        assert out.min() >= 0 and out.max() <= 1


def test_pointing_game_by_hand():
    from wsloc.evaluate.pointing import pointing_game
    from wsloc.sanity.data_randomization import pointing

    m = np.zeros((10, 10))
    m[3, 7] = 1.0  # the point: row 3, column 7 (pixel centre x 7.5, y 3.5)
    inside, far = [[6.0, 2.0, 8.0, 4.0]], [[0.0, 0.0, 2.0, 2.0]]  # far covers columns 0-1, rows 0-1
    maps = np.stack([m, m])
    # distance from (3, 7) to the nearest pixel of `far`, (1, 1): sqrt(2^2 + 6^2) = 6.32
    for tol, expected in ((0, [True, False]), (6, [True, False]), (7, [True, True])):
        out = pointing_game(maps, gt_boxes=[inside, far], tolerance=tol)
        assert out["hits"].tolist() == expected
    out = pointing_game(maps, gt_boxes=[inside, far], labels=[0, 1], tolerance=0)
    assert out["per_class"] == {0: 1.0, 1: 0.0} and out["accuracy"] == 0.5
    # the sanity check's pointing is this game at tolerance 0 on |map|, one box per image
    assert pointing(-maps, np.array(inside + far)).tolist() == [True, False]
