"""Degenerate input to wsloc.segment: every case gets its documented result and flag, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_segment_scenes import iou, make_scene
from wsloc.errors import MethodError
from wsloc.segment import SegmentConfig, Segmentation, segment


def assert_whole_image(seg: Segmentation, h: int, w: int, flag: str):
    assert seg.flag == flag
    assert seg.mask.shape == (h, w) and seg.mask.dtype == bool and seg.mask.all()
    np.testing.assert_array_equal(seg.box, [0, 0, w, h])
    np.testing.assert_array_equal(seg.boxes, [[0, 0, w, h]])
    assert set(seg.timings) >= {"colour_models", "graph_cut", "boxes"}


@pytest.fixture(scope="module")
def scene():
    return make_scene(0)


@pytest.mark.parametrize("value", [0.0, 1.0, -3.5, 1e30])
def test_constant_map(scene, value):
    image, _, _ = scene
    (seg,) = segment(image, np.full((1, 20, 30), value, np.float32))
    assert_whole_image(seg, *image.shape[:2], "constant_saliency")


def test_one_pixel_map_is_constant(scene):
    image, _, _ = scene
    (seg,) = segment(image, np.ones((1, 1, 1), np.float32))
    assert_whole_image(seg, *image.shape[:2], "constant_saliency")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_nan_map(scene, bad):
    image, _, _ = scene
    (seg,) = segment(image, np.full((1, 8, 8), bad, np.float32))
    assert_whole_image(seg, *image.shape[:2], "nan_saliency")


def test_constant_map_with_nan_is_constant(scene):
    image, _, _ = scene
    s = np.ones((1, 8, 8), np.float32)
    s[0, :2] = np.nan
    (seg,) = segment(image, s)
    assert_whole_image(seg, *image.shape[:2], "constant_saliency")


def test_partial_nan_still_segments(scene):
    """NaN in a corner (far from the object): set to the map's minimum, segmentation as usual, flagged."""
    image, obj, sal = scene
    s = sal.copy()
    s[:8, :8] = np.nan
    s[-3:, -3:] = np.inf
    clean, nan = segment(image, np.stack([sal, s]))
    assert nan.flag == "partial_nan_saliency" and clean.flag is None
    assert iou(nan.mask, obj) >= 0.9


def test_one_colour_image():
    image = np.full((40, 50, 3), (120, 30, 200), np.uint8)
    sal = np.random.default_rng(0).random((1, 40, 50)).astype(np.float32)
    (seg,) = segment(image, sal)
    assert_whole_image(seg, 40, 50, "uniform_image")


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 50), (40, 2)])
def test_tiny_image(shape):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    segs = segment(image, rng.random((2, 7, 7)).astype(np.float32))
    for seg in segs:
        assert_whole_image(seg, *shape, "tiny_image")


def test_tiny_image_threshold_is_an_option():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    sal = rng.random((1, 2, 2)).astype(np.float32)
    (seg,) = segment(image, sal, SegmentConfig(min_side=1, min_seed_pixels=1, n_components=1))
    assert seg.flag != "tiny_image" and seg.mask.shape == (2, 2) and seg.mask.any()


def test_single_salient_pixel_gives_empty_seeds(scene):
    """A map with one non-zero pixel: 1 foreground seed < min_seed_pixels -> the non-background pixels."""
    image, _, _ = scene
    s = np.zeros((1, 150, 200), np.float32)
    s[0, 70, 90] = 1.0
    (seg,) = segment(image, s)
    assert seg.flag == "empty_seeds"
    x0, y0, x1, y1 = seg.box
    assert x0 <= 90 < x1 and y0 <= 70 < y1 and x1 - x0 <= 6 and y1 - y0 <= 6
    assert seg.mask[66:75, 86:95].sum() == seg.mask.sum() > 0


def test_small_image_gives_empty_seeds():
    """8x8 pixels: 3 foreground seeds (5 %) < 10: fall back to the pixels that are not background seeds."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    sal = rng.random((1, 8, 8)).astype(np.float32)
    (seg,) = segment(image, sal)
    assert seg.flag == "empty_seeds"
    np.testing.assert_array_equal(seg.mask, sal[0] >= np.percentile(sal[0], 30))


def test_empty_cut_falls_back_to_foreground_seeds(scene):
    """Soft seeds and an overwhelming smoothness term: the cut keeps nothing; the mask is the fg seeds."""
    from wsloc.segment.seeds import resize_map, seed_masks

    image, _, sal = scene
    config = SegmentConfig(hard_seeds=False, gamma=1e5, max_side=None, mask_resize="nearest")
    (seg,) = segment(image, sal[None], config)
    assert seg.flag == "empty_mask"
    fg, _ = seed_masks(resize_map(sal, image.shape[:2], config.saliency_resize), config.q_fg, config.q_bg)
    np.testing.assert_array_equal(seg.mask, fg)


def test_no_maps_and_input_types(scene):
    image, obj, sal = scene
    assert segment(image, np.zeros((0, 5, 5), np.float32)) == []
    (a,) = segment(image, sal)  # [h, w] means one map
    (b,) = segment(image, torch.from_numpy(sal)[None])
    (c,) = segment(image, (sal * 1000).astype(np.int32)[None])  # integer maps and any scale
    (d,) = segment(image, sal[None] - 7.0)  # negative values
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.mask, d.mask)
    assert iou(c.mask, obj) >= 0.9


@pytest.mark.parametrize("image, sal", [
    (np.zeros((10, 10), np.uint8), np.ones((1, 5, 5))),
    (np.zeros((10, 10, 3), np.float32), np.ones((1, 5, 5))),
    (np.zeros((10, 10, 4), np.uint8), np.ones((1, 5, 5))),
    (np.zeros((0, 10, 3), np.uint8), np.ones((1, 5, 5))),
    (np.zeros((10, 10, 3), np.uint8), np.ones((1, 1, 5, 5))),
    (np.zeros((10, 10, 3), np.uint8), np.ones((1, 0, 5))),
    (np.zeros((10, 10, 3), np.uint8), np.array([[["a"]]])),
])
def test_malformed_input_raises(image, sal):
    with pytest.raises(MethodError, match="segment"):
        segment(image, sal)
