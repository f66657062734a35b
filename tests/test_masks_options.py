"""The segmentation options of issue 13's mask tuning: q_fg_hard, bg_fit, map_weight (and their defaults)."""

from __future__ import annotations

import numpy as np
import pytest

from wsloc.config import ConfigError
from wsloc.segment import SegmentConfig, segment
from wsloc.segment.seeds import map_prior

BASE = dict(seed_rule="fraction", q_fg=40.0, q_bg=20.0, max_side=None, box_rule="union")


def _scene():
    """40 x 40: a red square (rows/cols 10-29) on a blue background; the map is 1 on the square and 0.5 on a
    4-pixel blue ring around it (between the 40 % and 70 % levels), 0 elsewhere."""
    image = np.zeros((40, 40, 3), np.uint8)
    image[...] = (20, 40, 200)
    image[10:30, 10:30] = (220, 30, 30)
    sal = np.zeros((40, 40), np.float32)
    sal[6:34, 6:34] = 0.5
    sal[10:30, 10:30] = 1.0
    return image, sal


def test_map_prior_hand_values():
    sal = np.array([[0.0, 0.5, 1.0, 2.0]], np.float32)  # fractions of the max: 0, .25, .5, 1
    fg, bg = map_prior(sal, 2.0)
    r = np.array([0.01, 0.25, 0.5, 0.99])
    np.testing.assert_allclose(fg[0], -2.0 * np.log(r))
    np.testing.assert_allclose(bg[0], -2.0 * np.log(1 - r))
    assert fg[0, 2] == pytest.approx(bg[0, 2])  # half the maximum is neutral


def test_defaults_leave_the_cut_unchanged():
    image, sal = _scene()
    a = segment(image, sal, SegmentConfig(**BASE))[0].mask
    for extra in ({"q_fg_hard": 40.0}, {"map_weight": 0.0}, {"bg_fit": "seeds"}):
        np.testing.assert_array_equal(segment(image, sal, SegmentConfig(**BASE, **extra))[0].mask, a)


def test_q_fg_hard_lets_the_colours_decide_the_probable_band():
    image, sal = _scene()
    square = np.zeros((40, 40), bool)
    square[10:30, 10:30] = True
    hard = segment(image, sal, SegmentConfig(**BASE))[0].mask  # the 0.5 ring is a foreground seed: kept
    assert hard[6:34, 6:34].all() and not hard[:5].any()
    soft = segment(image, sal, SegmentConfig(**BASE, q_fg_hard=70.0))[0].mask  # only the square is fixed
    np.testing.assert_array_equal(soft, square)  # the blue ring goes with the blue background


def test_map_weight_dominates_when_large():
    # no colour information (one grey image but two grey levels so that it is not "uniform"): with a
    # huge map weight the unknown band (20 % .. 60 %) is labelled by the map alone: foreground above 50 %
    rng = np.random.default_rng(0)
    image = rng.integers(100, 103, (30, 30, 3)).astype(np.uint8)
    sal = np.tile(np.linspace(0, 1, 30, dtype=np.float32), (30, 1))
    cfg = SegmentConfig(**{**BASE, "q_fg": 60.0}, map_weight=1e4, gamma=1.0)
    mask = segment(image, sal, cfg)[0].mask
    np.testing.assert_array_equal(mask, np.tile(sal[0] > 0.5, (30, 1)))


def test_bg_fit_rest_equals_seeds_without_an_unknown_band():
    # every pixel is a foreground (>= 40 %) or background (<= 20 %) seed: "rest" is the background seeds
    image, _ = _scene()
    sal = np.zeros((40, 40), np.float32)
    sal[10:30, 10:30] = 1.0
    sal[5:8, 5:35] = 0.45
    a = segment(image, sal, SegmentConfig(**BASE))[0].mask
    b = segment(image, sal, SegmentConfig(**BASE, bg_fit="rest"))[0].mask
    np.testing.assert_array_equal(a, b)


def test_bad_values_are_one_line_errors():
    with pytest.raises(ConfigError, match="q_fg_hard=30.0: must not be below q_fg=40.0"):
        SegmentConfig(**BASE, q_fg_hard=30.0)
    with pytest.raises(ConfigError, match="bg_fit='all': must be one of seeds, rest"):
        SegmentConfig(bg_fit="all")
    with pytest.raises(ConfigError, match="map_weight=-1"):
        SegmentConfig(map_weight=-1)
