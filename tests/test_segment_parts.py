"""The building blocks of wsloc.segment: colour models, pairwise weights, the cut, seeds, config."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from wsloc.errors import MethodError, WslocError
from wsloc.segment import (ColourModel, PairwiseGraph, SegmentConfig, colour_features, fit_colour_model,
                           pairwise_weights, seed_masks)
from wsloc.segment.seeds import clean_map, resize_map, working_shape


# ---- colour models ---------------------------------------------------------------------------

@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_log_likelihood_equals_sklearn_score_samples(cov):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(m, s, (150, 3)) for m, s in [(40, 8), (120, 20), (200, 5)]])
    gmm = GaussianMixture(3, covariance_type=cov, random_state=0, reg_covar=1.0).fit(x)
    grid = rng.uniform(0, 255, (500, 3))
    np.testing.assert_allclose(ColourModel.from_sklearn(gmm).log_likelihood(grid), gmm.score_samples(grid),
                               rtol=2e-5, atol=2e-3)


def test_fit_colour_model_separates_colours():
    rng = np.random.default_rng(1)
    red = rng.normal((200, 40, 40), 10, (300, 3))
    green = rng.normal((40, 180, 60), 10, (300, 3))
    m_red, m_green = fit_colour_model(red), fit_colour_model(green)
    assert (m_red.cost(red) < m_green.cost(red)).all()
    assert (m_green.cost(green) < m_red.cost(green)).all()


def test_fit_colour_model_is_reproducible():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (400, 3))
    a, b = fit_colour_model(x, random_state=3), fit_colour_model(x, random_state=3)
    np.testing.assert_array_equal(a.means, b.means)


@pytest.mark.parametrize("x", [np.full((50, 3), 128.0), np.array([[10.0, 20, 30]]),
                               np.array([[0.0, 0, 0], [255, 255, 255], [0, 0, 0]])])
def test_fit_colour_model_degenerate_samples(x):
    model = fit_colour_model(x, n_components=5)
    assert len(model.means) <= len(np.unique(x, axis=0))
    cost = model.cost(np.array([x[0], [100.0, 100, 100]]))
    assert np.isfinite(cost).all() and cost[0] < cost[1]


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_numpy_em_step_equals_sklearn_em_step(cov):
    """One EM iteration of fit_gmm_numpy from a given model = sklearn's first iteration from that model."""
    from wsloc.segment.colour import fit_gmm_numpy

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(m, s, (120, 3)) for m, s in [(40, 8), (120, 20), (200, 5)]])
    start = fit_gmm_numpy(x, 3, cov, max_iter=0, rng=np.random.default_rng(1))
    ours = fit_gmm_numpy(x, 3, cov, max_iter=1, rng=np.random.default_rng(1))
    p = start.prec_chol
    prec = np.matmul(p, p.transpose(0, 2, 1))
    prec_init = {"full": prec, "tied": prec[0], "diag": np.diagonal(prec, axis1=1, axis2=2),
                 "spherical": prec[:, 0, 0]}[cov]
    gmm = GaussianMixture(3, covariance_type=cov, max_iter=1, reg_covar=1.0, init_params="random", random_state=0,
                          weights_init=np.exp(start.log_weights), means_init=start.means, precisions_init=prec_init)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm.fit(x)
    theirs = ColourModel.from_sklearn(gmm)
    np.testing.assert_allclose(ours.means, theirs.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.log_weights, theirs.log_weights, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.prec_chol, theirs.prec_chol, rtol=1e-7, atol=1e-12)


def test_numpy_backend_fits_clusters():
    rng = np.random.default_rng(5)
    centres = np.array([[40.0, 40, 40], [200, 60, 60], [60, 200, 60]])
    x = np.concatenate([rng.normal(c, 6, (200, 3)) for c in centres])
    model = fit_colour_model(x, n_components=3, max_iter=10, backend="numpy")
    nearest = np.linalg.norm(model.means[:, None] - centres[None], axis=-1).min(axis=0)
    assert (nearest < 2.0).all()
    reference = GaussianMixture(3, reg_covar=1.0, random_state=0).fit(x)
    assert model.log_likelihood(x).mean() == pytest.approx(reference.score(x), abs=0.01)


def test_colour_features_ranges():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    for space in ("rgb", "lab", "ycrcb", "hsv"):
        f = colour_features(image, space)
        assert f.shape == image.shape and f.dtype == np.float32 and f.min() >= 0 and f.max() <= 255
    np.testing.assert_array_equal(colour_features(image, "rgb"), image)
    white = colour_features(np.full((1, 1, 3), 255, np.uint8), "lab")[0, 0]
    np.testing.assert_allclose(white, [255, 128, 128], atol=1)  # L* = 100 -> 255, a = b = 0 -> 128


# ---- pairwise weights and the cut ---------------------------------------------------------------

def test_pairwise_weights_hand_derived():
    # 2x2 image, one channel: values a b / c d
    f = np.array([[[0.0], [2.0]], [[4.0], [6.0]]])
    edges, beta = pairwise_weights(f, gamma=10.0, connectivity=8)
    # pairs: right (0,2):4, (4,6):4; down (0,4):16, (2,6):16; down-right (0,6):36; down-left (2,4):4
    assert beta == pytest.approx(1.0 / (2.0 * (4 + 4 + 16 + 16 + 36 + 4) / 6))
    w = dict(edges)
    np.testing.assert_allclose(w[(0, 1)], 10 * np.exp(-beta * np.array([[4.0, 0], [4, 0]])) * [[1, 0], [1, 0]])
    np.testing.assert_allclose(w[(1, 0)], 10 * np.exp(-beta * np.array([[16.0, 16], [0, 0]])) * [[1, 1], [0, 0]])
    np.testing.assert_allclose(w[(1, 1)], [[10 / np.sqrt(2) * np.exp(-beta * 36), 0], [0, 0]])
    np.testing.assert_allclose(w[(1, -1)], [[0, 10 / np.sqrt(2) * np.exp(-beta * 4)], [0, 0]])
    edges4, _ = pairwise_weights(f, gamma=10.0, connectivity=4)
    assert [off for off, _ in edges4] == [(0, 1), (1, 0)]


def test_pairwise_weights_uniform_image():
    edges, beta = pairwise_weights(np.full((3, 4, 3), 7.0), gamma=5.0)
    assert beta == 0.0
    np.testing.assert_allclose(dict(edges)[(0, 1)][:, :3], 5.0)
    np.testing.assert_allclose(dict(edges)[(1, 1)][:2, :3], 5.0 / np.sqrt(2))


def _energy(labels, cost_fg, cost_bg, edges):
    e = np.where(labels, cost_fg, cost_bg).sum()
    h, w = labels.shape
    for (dy, dx), wt in edges:
        for y, x in itertools.product(range(h), range(w)):
            y2, x2 = y + dy, x + dx
            if 0 <= y2 < h and 0 <= x2 < w and labels[y, x] != labels[y2, x2]:
                e += wt[y, x]
    return e


@pytest.mark.parametrize("seed", range(5))
def test_cut_reaches_brute_force_minimum(seed):
    rng = np.random.default_rng(seed)
    f = rng.uniform(0, 255, (3, 3, 3))
    cost_fg, cost_bg = rng.uniform(0, 30, (3, 3)), rng.uniform(0, 30, (3, 3))
    graph = PairwiseGraph(f, gamma=20.0)
    edges, _ = pairwise_weights(f, gamma=20.0)
    best = min(_energy(np.array(bits, bool).reshape(3, 3), cost_fg, cost_bg, edges)
               for bits in itertools.product([0, 1], repeat=9))
    mask = graph.cut(cost_fg, cost_bg)
    assert _energy(mask, cost_fg, cost_bg, edges) == pytest.approx(best)
    # the same graph serves several cuts (other unaries), each optimal
    mask2 = graph.cut(cost_bg, cost_fg)
    best2 = min(_energy(np.array(bits, bool).reshape(3, 3), cost_bg, cost_fg, edges)
                for bits in itertools.product([0, 1], repeat=9))
    assert _energy(mask2, cost_bg, cost_fg, edges) == pytest.approx(best2)


def test_cut_without_pairwise_is_pixelwise():
    rng = np.random.default_rng(7)
    cost_fg, cost_bg = rng.normal(size=(6, 7)), rng.normal(size=(6, 7))
    mask = PairwiseGraph(rng.uniform(0, 255, (6, 7, 3)), gamma=0.0).cut(cost_fg, cost_bg)
    np.testing.assert_array_equal(mask, cost_fg < cost_bg)


def test_hard_seeds_override_unaries():
    f = np.zeros((5, 5, 3))
    cost_fg, cost_bg = np.full((5, 5), 100.0), np.zeros((5, 5))  # everything wants background
    hard_fg = np.zeros((5, 5), bool)
    hard_fg[2, 2] = True
    hard_bg = np.zeros((5, 5), bool)
    hard_bg[0, 0] = True
    mask = PairwiseGraph(f, gamma=50.0).cut(cost_fg, cost_bg, hard_fg, hard_bg)
    assert mask[2, 2] and not mask[0, 0] and mask.sum() == 1


# ---- seeds and maps ----------------------------------------------------------------------------

def test_seed_masks_percentiles():
    s = np.arange(100, dtype=np.float32).reshape(10, 10)
    fg, bg = seed_masks(s, 95, 30)
    assert fg.sum() == 5 and fg.ravel()[95:].all()  # > 0.95 * 99 = 94.05
    assert bg.sum() == 30 and bg.ravel()[:30].all()  # < 0.3 * 99 = 29.7


def test_seed_masks_ties():
    s = np.zeros((10, 10), np.float32)
    s[4:6, 4:6] = 1.0  # 96 % zeros: the 30th percentile and the 95th are both 0
    fg, bg = seed_masks(s, 95, 30)
    assert fg.sum() == 4 and fg[4:6, 4:6].all()
    assert bg.sum() == 96 and not (fg & bg).any()
    s = np.ones((10, 10), np.float32)
    s[0, 0] = 0.0  # ties at the maximum
    fg, bg = seed_masks(s, 95, 30)
    assert fg.sum() == 99 and bg.sum() == 1 and bg[0, 0]


def test_clean_map():
    s = np.array([[1.0, np.nan], [np.inf, 3.0]])
    cleaned, repaired = clean_map(s)
    assert repaired and cleaned.dtype == np.float32
    np.testing.assert_array_equal(cleaned, [[1, 1], [1, 3]])
    assert clean_map(np.full((2, 2), np.nan)) == (None, True)
    assert clean_map(np.ones((2, 2)))[1] is False


def test_resize_map_and_working_shape():
    assert working_shape(227, 227, 128) == (128, 128)
    assert working_shape(375, 500, 128) == (96, 128)
    assert working_shape(100, 50, 128) == (100, 50)
    assert working_shape(100, 50, None) == (100, 50)
    s = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(resize_map(s, (2, 2), "area"), [[2.5, 4.5], [10.5, 12.5]])
    for method in ("auto", "area", "bilinear", "nearest", "bicubic"):
        out = resize_map(s, (7, 9), method, blur=1.0)
        assert out.shape == (7, 9) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 15


# ---- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [dict(q_fg=101), dict(q_bg=96), dict(n_components=0), dict(colour_space="xyz"),
                                    dict(max_side=1), dict(max_side=12.5), dict(box_rule="biggest"),
                                    dict(iterations=0), dict(gamma=-1.0), dict(connectivity=6),
                                    dict(hard_seeds="yes"), dict(reg_covar=0.0), dict(max_seed_pixels=0)])
def test_config_rejects_bad_values(change):
    with pytest.raises(MethodError, match=next(iter(change))):
        SegmentConfig(**change)


def test_config_replace():
    c = SegmentConfig().replace(gamma=10.0, max_side=None)
    assert c.gamma == 10.0 and c.max_side is None and c.q_fg == SegmentConfig().q_fg
    with pytest.raises(WslocError, match="gama"):
        SegmentConfig().replace(gama=1.0)
