"""The threshold segmenter and fraction seeds (SegmentConfig.algorithm / seed_rule)."""

from __future__ import annotations

import numpy as np
import pytest

from wsloc.errors import MethodError
from wsloc.segment import SegmentConfig, segment
from wsloc.segment.seeds import fraction_seeds, relative_map, seed_masks, threshold_mask


def _two_blobs():
    m = np.zeros((40, 60), np.float32)
    m[10:20, 20:40] = np.linspace(0.6, 1.0, 200).reshape(10, 20)  # strong blob, 10 x 20
    m[28:36, 2:8] = 0.3  # weak blob
    return m


def test_relative_map_by_hand():
    assert np.allclose(relative_map(np.array([[-2.0, 0.0], [1.0, 4.0]])), [[0, 0], [0.25, 1]])
    assert np.allclose(relative_map(np.array([[-4.0, -2.0], [-3.0, -1.0]])), [[0, 2 / 3], [1 / 3, 1]])


def test_threshold_mask_and_box_by_hand():
    m = _two_blobs()
    assert threshold_mask(m, 0.5).sum() == 200
    assert threshold_mask(m, 0.25).sum() == 200 + 48
    image = np.full((40, 60, 3), 90, np.uint8)
    strong = segment(image, m[None], SegmentConfig(algorithm="threshold", threshold=0.5))[0]
    assert np.array_equal(strong.box, [20, 10, 40, 20]) and strong.flag is None
    both = segment(image, m[None], SegmentConfig(algorithm="threshold", threshold=0.25, box_rule="union"))[0]
    assert np.array_equal(both.box, [2, 10, 40, 36])
    # the largest component is still the strong blob; a uniform image does not matter without colour models
    assert np.array_equal(segment(image, m[None], SegmentConfig(algorithm="threshold", threshold=0.25))[0].box,
                          [20, 10, 40, 20])


def test_threshold_works_on_the_working_grid_of_a_large_image():
    m = np.zeros((300, 400), np.float32)
    m[60:120, 100:300] = 2.0
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    s = segment(image, m[None], SegmentConfig(algorithm="threshold", threshold=0.5, max_side=80))[0]
    assert s.mask.shape == (300, 400)
    assert np.allclose(s.box, [100, 60, 300, 120], atol=4)  # one working pixel is 5 image pixels


def test_fraction_seeds_follow_the_map_not_a_fixed_share():
    m = _two_blobs()
    fg, bg = fraction_seeds(m, 0.5, 0.1)
    assert fg.sum() == 200 and not (fg & bg).any()
    assert bg.sum() == 40 * 60 - 200 - 48
    p_fg, _ = seed_masks(m, 95, 30)
    assert p_fg.sum() == 120  # percentile seeds: 5 % of the image (2400 pixels), whatever the object's size


def test_fraction_seeded_graphcut_finds_a_two_colour_object():
    image = np.full((40, 60, 3), (30, 120, 40), np.uint8)
    image[8:24, 15:45] = (220, 40, 40)  # the object, larger than the map's peak
    m = np.zeros((40, 60), np.float32)
    m[8:24, 15:45] = 0.3  # the map is lukewarm over the object: neither seed
    m[12:20, 22:38] = 1.0
    m += 0.05 * np.random.default_rng(0).random((40, 60), dtype=np.float32)
    s = segment(image, m[None], SegmentConfig(seed_rule="fraction", q_fg=50.0, q_bg=10.0, max_side=None))[0]
    assert np.array_equal(s.box, [15, 8, 45, 24])


@pytest.mark.parametrize("bad", [{"algorithm": "otsu"}, {"threshold": 1.5}, {"seed_rule": "quantile"}])
def test_bad_options_are_refused(bad):
    with pytest.raises(MethodError, match=list(bad)[0]):
        SegmentConfig(**bad)
