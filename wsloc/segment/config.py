"""Every option of the saliency -> mask -> box step, with its documented default.

The paper fixes the seeds (95th / 30th percentiles), GMM colour models, one GraphCut and
the largest-component box; GrabCut fixes 5 full-covariance components and gamma = 50.
What the paper leaves open was measured on ../shared/data/imagenet-val-1300 with
``scripts/tune_segment.py`` (plain gradient maps of EfficientNet-Lite0 for the true class
of the first 640 photos, 227x227; GT-known accuracy = the box has IoU >= 0.5 with a
ground-truth box, in the devkit convention of ``wsloc evaluate`` (:mod:`wsloc.evaluate.iou`;
re-measured for issue 16 at commit ef0f370, the earlier table used the continuous rule); CPU
ms per map on the shared 2-core machine, one map per image, from the first measurement, not
re-timed):

=========================  ==========================================  ==================
option                     GT-known accuracy (640 images)              chosen
=========================  ==========================================  ==================
max_side                   64: .419, 80: .430, 96: .431, 112: .397,    80 (CPU 13 ms/map;
                           128: .422; 227 (no cap, 400 imgs): .348     128: 40, 227: 133)
gmm_backend                numpy .430 (13 ms/map), sklearn .427 (23)   numpy
gmm_max_iter (numpy)       1: .430, 2: .430, 5: .423                   2
max_seed_pixels            200: .430, 500: .430, 1000: .420            500
colour_space               rgb .430, lab .428, ycrcb .430;             rgb
                           hsv (400 imgs, 96 px) .380 vs rgb .410
saliency_resize (400, 96)  area .410, bilinear .343, nearest .280,     auto (= area when
                           bicubic .278                                shrinking)
saliency_blur              0: .430, 0.5: .436, 1: .423                 0
mask_resize                linear .430, nearest .434                   linear
reg_covar                  0.25: .425, 1: .430, 4: .430                1
hard_seeds (400, 96)       True .410, False .305 (123 empty masks)     True
iterations (400, 96)       1: .410, 2: .408, 3: .413                   1 (the paper's)
=========================  ==========================================  ==================

Measured but left at the paper's / GrabCut's value (the localizer's presets may differ):
``gamma`` 10: .464, 25: .441, 50: .430; ``box_rule`` "union" (box of the whole mask)
.606 and "mass" .431 against "largest" .430. Whole-image box: .478 (400 images).
Differences of about 2 points are noise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..config import Config, setting

COLOUR_SPACES = ("rgb", "lab", "ycrcb", "hsv")
SALIENCY_RESIZE = ("auto", "area", "bilinear", "nearest", "bicubic")
MASK_RESIZE = ("linear", "nearest")
BOX_RULES = ("largest", "mass", "union")
ALGORITHMS = ("graphcut", "threshold")
SEED_RULES = ("percentile", "fraction")
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
GMM_INITS = ("kmeans", "k-means++", "random_from_data", "random")
GMM_BACKENDS = ("sklearn", "numpy")
BG_FITS = ("seeds", "rest")


@dataclass(frozen=True)
class SegmentConfig(Config):
    """Options of :func:`wsloc.segment.segment` (Simonyan et al. 2014, section 6, and GrabCut).

    Algorithm:
        algorithm: "graphcut" (the paper: colour models + GraphCut) or "threshold" (no
            colour models: the mask is the pixels at or above ``threshold`` of the map's
            maximum, as in the CAM / Grad-CAM papers' boxes).
        threshold: that fraction, in [0, 1] ("threshold" only; the maximum is taken
            after clipping negative values, see :func:`wsloc.segment.seeds.relative_map`).

    Seeds (the paper's rule):
        seed_rule: "percentile" (the paper: ``q_fg`` / ``q_bg`` are percentiles of the
            map) or "fraction" (``q_fg`` / ``q_bg`` are percent of the map's maximum: seeds
            whose area follows the map instead of a fixed 5 % / 30 % of the image).
        q_fg: percentile (0..100) of the map above which pixels seed the foreground colour
            model (strictly above; when no pixel is strictly above, e.g. ties at the
            maximum, the pixels equal to it).  Paper: 95.
        q_bg: percentile below which pixels seed the background model (strictly below;
            when none, the pixels equal to it, e.g. the zeros of a map that is 0 over more
            than ``q_bg`` % of the image).  Paper: 30.
        min_seed_pixels: a seed set with fewer pixels than this (at the working resolution)
            cannot carry a colour model: flag ``"empty_seeds"`` (see :mod:`wsloc.segment`).

    Colour models (scikit-learn ``GaussianMixture``; GrabCut uses 5 full-covariance components):
        n_components, covariance_type ("full", "tied", "diag", "spherical"), random_state.
        max_seed_pixels: each model is fitted on a random subsample (seeded by
            ``random_state``) of at most this many of its seed pixels; None: all of them.
        gmm_backend: "sklearn" (scikit-learn's ``GaussianMixture``) or "numpy" (the same
            model and EM updates vectorised in numpy, without sklearn's per-call overhead;
            see :func:`wsloc.segment.colour.fit_gmm_numpy`).
        gmm_max_iter, gmm_init ("kmeans", "k-means++", "random_from_data", "random"; sklearn
            only), gmm_tol (sklearn only): EM iterations, initialisation and tolerance.
        reg_covar: added to the covariance diagonals, in (colour units)^2 where every
            colour space is scaled to 0..255 per channel (1.0: one grey level of std).
        colour_space: "rgb", "lab", "ycrcb" or "hsv" (OpenCV's 8-bit conversions, each
            channel 0..255; hsv is HSV_FULL).  Used by the colour models and by the
            contrast term.

    Graph cut (PyMaxflow, Boykov-Kolmogorov):
        gamma: weight of the contrast-sensitive Potts term
            ``gamma * exp(-beta * |I_p - I_q|^2) / dist(p, q)`` with
            ``beta = 1 / (2 * mean |I_p - I_q|^2)`` over all neighbour pairs (GrabCut: 50).
        connectivity: 8 (paper/GrabCut) or 4.
        hard_seeds: the seed pixels are fixed to their label (terminal capacity
            ``9 * gamma + 1``, which exceeds every pixel's total pairwise weight).
        iterations: number of cuts; after each cut but the last, both colour models are
            re-fitted from the current labelling (GrabCut style). 1: models from the seeds only.
        q_fg_hard: None (the foreground seeds are the pixels fixed to foreground), or a level
            above ``q_fg`` in the units of ``seed_rule``: only the pixels above it are fixed
            (GrabCut's GC_FGD); those between ``q_fg`` and it still seed the foreground model
            but the cut decides their label (GC_PR_FGD). ``hard_seeds=True`` only.
        bg_fit: what the first background colour model is fitted on: "seeds" (the background
            seeds) or "rest" (every pixel that is not a foreground seed, as GrabCut's
            GC_BGD + GC_PR_BGD). The cut fixes only the background seeds either way.
        map_weight: weight ``w`` of the map as a unary prior beside the colour models: with
            ``r`` the map's fraction of its maximum (:func:`wsloc.segment.seeds.relative_map`)
            clipped to [0.01, 0.99], labelling a pixel foreground costs ``-w log r`` more and
            background ``-w log(1 - r)`` more (:func:`wsloc.segment.seeds.map_prior`). 0: none.

    Resolution:
        max_side: segmentation runs at the image's own resolution, shrunk (area
            interpolation) so that its longer side is at most this many pixels; None: no cap.
        saliency_resize: how the map is brought to the working resolution: "area",
            "bilinear", "nearest", "bicubic", or "auto" (area when shrinking, bilinear when
            enlarging).
        saliency_blur: Gaussian sigma (working-resolution pixels) applied to the resized
            map before the percentiles; 0: none.
        mask_resize: how the working-resolution mask is brought back to the image's
            resolution: "linear" (bilinear of the 0/1 mask, threshold 0.5) or "nearest".

    Boxes (always computed on the full-resolution mask):
        box_rule: which component gives ``Segmentation.box``: "largest" (the paper's rule:
            the largest connected component), "mass" (the component holding the most
            saliency), "union" (bounding box of the whole mask).
        box_connectivity: 8 (paper) or 4 for the connected components.

    Degenerate input:
        min_side: an image whose height or width is below this is too small to segment
            (flag ``"tiny_image"``).
    """

    algorithm: str = setting("graphcut", choices=ALGORITHMS)
    threshold: float = setting(0.2, low=0, high=1)
    seed_rule: str = setting("percentile", choices=SEED_RULES)
    q_fg: float = setting(95.0, low=0, high=100)
    q_bg: float = setting(30.0, low=0, high=100)
    min_seed_pixels: int = setting(10, kind="integer", low=1)
    n_components: int = setting(5, kind="integer", low=1)
    covariance_type: str = setting("full", choices=COVARIANCE_TYPES)
    random_state: int = setting(0, kind="integer", low=0)
    max_seed_pixels: int | None = setting(500, kind="integer", low=1, optional=True)
    gmm_backend: str = setting("numpy", choices=GMM_BACKENDS)
    gmm_max_iter: int = setting(2, kind="integer", low=1)
    gmm_init: str = setting("k-means++", choices=GMM_INITS)
    gmm_tol: float = setting(1e-3, low=0)
    reg_covar: float = setting(1.0, above=0, why="a one-colour seed set has a singular covariance")
    colour_space: str = setting("rgb", choices=COLOUR_SPACES)
    gamma: float = setting(50.0, low=0)
    connectivity: int = setting(8, choices=(4, 8))
    hard_seeds: bool = setting(True)
    iterations: int = setting(1, kind="integer", low=1)
    q_fg_hard: float | None = setting(None, low=0, high=100, optional=True)
    bg_fit: str = setting("seeds", choices=BG_FITS)
    map_weight: float = setting(0.0, low=0)
    max_side: int | None = setting(80, kind="integer", low=2, optional=True)
    saliency_resize: str = setting("auto", choices=SALIENCY_RESIZE)
    saliency_blur: float = setting(0.0, low=0)
    mask_resize: str = setting("linear", choices=MASK_RESIZE)
    box_rule: str = setting("largest", choices=BOX_RULES)
    box_connectivity: int = setting(8, choices=(4, 8))
    min_side: int = setting(3, kind="integer", low=1)

    def cross_check(self) -> None:
        if self.q_bg > self.q_fg:
            raise self.fail("q_bg", f"must not exceed q_fg={self.q_fg}")
        if self.q_fg_hard is not None and self.q_fg_hard < self.q_fg:
            raise self.fail("q_fg_hard", f"must not be below q_fg={self.q_fg}")


def option_names() -> list[str]:
    """The option names of :class:`SegmentConfig`, in declaration order."""
    return [f.name for f in fields(SegmentConfig)]
