"""Map similarity: Spearman (abs/signed) against scipy, SSIM and HOG properties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from wsloc.sanity.similarity import METRICS, compare_maps, hog_correlation, spearman, ssim, unit_abs


def _blob(h=64, w=64, cy=20, cx=30, s=6.0):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))


def test_spearman_matches_scipy_per_pair():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 12, 10))
    b = a + rng.normal(scale=1.0, size=a.shape)
    b[0, :3] = 0.0  # ties
    got_signed = spearman(a, b, absolute=False)
    got_abs = spearman(a, b, absolute=True)
    for i in range(5):
        assert got_signed[i] == pytest.approx(spearmanr(a[i].ravel(), b[i].ravel())[0], abs=1e-12)
        assert got_abs[i] == pytest.approx(spearmanr(np.abs(a[i]).ravel(), np.abs(b[i]).ravel())[0], abs=1e-12)


def test_spearman_sign_and_monotone_invariance():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(16, 16))
    assert spearman(a, -a, absolute=False) == pytest.approx(-1.0)
    assert spearman(a, -a, absolute=True) == pytest.approx(1.0)
    assert spearman(a, np.exp(3 * a), absolute=False) == pytest.approx(1.0)
    # undefined for a constant map: 0 against a varying map, 1 between identical constant maps
    assert spearman(a, np.ones_like(a)) == 0.0 and spearman(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert hog_correlation(np.zeros((32, 32)), np.zeros((32, 32))) == 1.0
    assert hog_correlation(np.zeros((32, 32)), _blob(32, 32, 16, 16)) == 0.0


def test_ssim_properties():
    a = _blob()
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 5 * a) == pytest.approx(1.0)  # maps are scaled to [0, 1] first
    assert ssim(a, -a) == pytest.approx(1.0)  # of absolute values
    rng = np.random.default_rng(2)
    assert ssim(a, rng.random(a.shape)) < 0.2
    far = _blob(cy=50, cx=10)
    assert ssim(a, far) < ssim(a, _blob(cy=22, cx=31))


def test_hog_correlation_properties():
    a = _blob()
    assert hog_correlation(a, a) == pytest.approx(1.0)
    assert hog_correlation(a, 2 * a) == pytest.approx(1.0)
    near = hog_correlation(a, _blob(cy=21, cx=31))
    far = hog_correlation(a, _blob(cy=48, cx=48))
    assert near > 0.7 and far < near
    with pytest.raises(ValueError, match="too small"):
        hog_correlation(np.ones((8, 8)), np.ones((8, 8)))


def test_unit_abs_and_compare_maps_shapes():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 40, 40))
    u = unit_abs(a)
    assert u.min() >= 0 and np.allclose(u.reshape(3, -1).max(1), 1.0)
    assert np.all(unit_abs(np.zeros((2, 4, 4))) == 0)
    out = compare_maps(a, a)
    assert tuple(out) == METRICS and all(v.shape == (3,) for v in out.values())
    assert np.allclose([out[m] for m in METRICS], 1.0)
    with pytest.raises(ValueError, match="same shape"):
        compare_maps(a, a[:2])
