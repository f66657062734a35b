"""Saliency map -> object mask -> box (Simonyan et al. 2014, section 6).

For each map of an image: seeds from the map's percentiles, a GMM colour model per seed
set, a GraphCut on the pixel grid (unaries: negative log-likelihoods; pairwise:
contrast-sensitive Potts on the 8-neighbourhood), optionally GrabCut-style re-fitting,
then the box of the largest 8-connected component of the mask. With
``algorithm="threshold"`` the mask is the map's pixels above a fraction of its maximum
instead (no colour models, no cut; the CAM papers' boxes).

Degenerate input never raises and never passes silently: the result carries a flag and
a documented mask (``Segmentation.flag``; the first that applies wins):

================== ================================================= =========================
flag               when                                              mask
================== ================================================= =========================
"tiny_image"       image height or width < ``config.min_side``       whole image
"nan_saliency"     no finite value in the map                        whole image
"constant_saliency" every (finite) value equal                       whole image
"uniform_image"    the image has one colour (at working resolution)  whole image
"empty_seeds"      a seed set has < ``config.min_seed_pixels``       pixels that are not
                   pixels (e.g. a map with one non-zero pixel)       background seeds
"empty_mask"       the cut labels nothing foreground (only possible  the foreground seeds
                   with ``hard_seeds=False``)
"partial_nan_saliency" some map entries were NaN/inf: they were set  the segmentation
                   to the map's minimum finite value, then segmented
None               normal segmentation                               the segmentation
================== ================================================= =========================

The whole-image result has ``box = [0, 0, W, H]``.

:func:`segment` is two steps: :func:`prepare_maps` brings the maps to the working grid (and
sets the flags that the full-size map decides: "tiny_image", "nan_saliency",
"constant_saliency", "partial_nan_saliency"), :func:`segment_prepared` does the rest on the
working grid only. The batch runner runs the first in its main process and sends the
segmentation processes the small maps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..boxes import components, mask_box
from ..errors import MethodError
from .colour import ColourModel, colour_features, fit_colour_model, subsample
from .config import SegmentConfig
from .graph import PairwiseGraph
from .seeds import (clean_map, fraction_seeds, map_prior, resize_map, seed_masks, threshold_mask, working_image,
                    working_shape)


@dataclass
class Segmentation:
    """Result of segmenting one saliency map.

    Attributes:
        mask: bool ``[H, W]`` object mask at the image's full resolution.
        box: float64 ``[4]`` xyxy box chosen by ``config.box_rule`` (continuous pixel coords).
        boxes: float64 ``[M, 4]`` xyxy boxes of all connected components of ``mask``,
            largest first (always filled; ``[0, 4]`` never happens because an empty mask is
            replaced by a fallback).
        flag: None, or why a fallback was used / what was repaired (see the module docstring).
        timings: seconds spent on this map: "prepare" (resizing, in :func:`prepare_maps`,
            which may have run in another process, and seeds; per-image work is paid by the
            first map that needs it), "colour_models" (GMM fits and unaries),
            "graph_cut" (pairwise graph, first map only, and the cuts), "boxes" (mask
            upsampling, components, boxes).
    """

    mask: np.ndarray
    box: np.ndarray
    boxes: np.ndarray
    flag: str | None = None
    timings: dict = field(default_factory=dict)


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MethodError(f"segment: image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise MethodError(f"segment: image has no pixels (shape {image.shape})")
    return image


def _check_saliency(saliency) -> np.ndarray:
    if hasattr(saliency, "detach"):  # torch tensor
        saliency = saliency.detach().cpu().numpy()
    saliency = np.asarray(saliency)
    if saliency.ndim == 2:
        saliency = saliency[None]
    if saliency.ndim != 3 or saliency.shape[1] == 0 or saliency.shape[2] == 0:
        raise MethodError(f"segment: saliency must be [K, h, w] (or [h, w]) with h, w >= 1, got shape {saliency.shape}")
    if not (np.issubdtype(saliency.dtype, np.floating) or np.issubdtype(saliency.dtype, np.integer)
            or saliency.dtype == bool):
        raise MethodError(f"segment: saliency must be numeric, got dtype {saliency.dtype}")
    return saliency


_WHOLE_FLAGS = ("tiny_image", "nan_saliency", "constant_saliency")  # prepared flags whose result is the whole image


@dataclass
class PreparedMaps:
    """An image's saliency maps brought to its working grid (:func:`prepare_maps`): all that
    :func:`segment_prepared` reads of them (the batch runner sends this to its segmentation
    processes instead of the maps at the network's input resolution, about a tenth of the bytes).

    Attributes:
        size: ``(H, W)`` of the image.
        maps: float32 ``[K, h, w]`` maps on the working grid
            (:func:`wsloc.segment.seeds.working_shape` of ``size`` and ``max_side``); zeros for a map
            flagged "tiny_image", "nan_saliency" or "constant_saliency".
        flags: ``[K]`` None, or what the full-size map already decided (one of those three: the
            result is the whole image) or noted ("partial_nan_saliency").
        seconds: ``[K]`` seconds spent preparing each map (added to its "prepare" timing).
    """

    size: tuple[int, int]
    maps: np.ndarray
    flags: list
    seconds: list

    def __len__(self) -> int:
        return len(self.flags)


def _prepare_one(saliency: np.ndarray, shape: tuple[int, int], config: SegmentConfig) -> tuple:
    """One full-size map -> (float32 working-grid map or None, flag)."""
    cleaned, repaired = clean_map(saliency)
    if cleaned is None:
        return None, "nan_saliency"
    if cleaned.max() <= cleaned.min():
        return None, "constant_saliency"
    small = resize_map(cleaned, shape, config.saliency_resize, config.saliency_blur)
    if small.max() <= small.min():  # e.g. the only salient pixel skipped by "nearest"
        small = resize_map(cleaned, shape, "area")
    return small, ("partial_nan_saliency" if repaired else None)


def prepare_maps(saliency, size: tuple[int, int], config: SegmentConfig | None = None) -> PreparedMaps:
    """The first step of :func:`segment`: an image's maps at any resolution -> its working grid.

    NaN/inf entries are repaired, flat maps flagged, and the rest resized by
    ``config.saliency_resize`` / ``saliency_blur`` (area when that leaves the map flat). After
    this nothing reads the full-size maps: the "mass" box rule weighs the working-grid map.

    Args:
        saliency: float ``[K, h, w]`` (or ``[h, w]``; numpy or torch), any resolution and scale.
        size: ``(H, W)`` of the image.
        config: options; ``SegmentConfig()`` by default.

    Raises:
        MethodError: malformed saliency array (wrong shape or dtype).
    """
    config = SegmentConfig() if config is None else config
    saliency = _check_saliency(saliency)
    height, width = int(size[0]), int(size[1])
    shape = working_shape(height, width, config.max_side)
    maps = np.zeros((saliency.shape[0], *shape), np.float32)
    flags, seconds = [], []
    tiny = height < config.min_side or width < config.min_side
    for k in range(saliency.shape[0]):
        t = time.perf_counter()
        small, flag = (None, "tiny_image") if tiny else _prepare_one(saliency[k], shape, config)
        if small is not None:
            maps[k] = small
        flags.append(flag)
        seconds.append(time.perf_counter() - t)
    return PreparedMaps((height, width), maps, flags, seconds)


class _ImageContext:
    """Per-image work shared by all maps: the working-resolution image, its features and graph."""

    def __init__(self, image: np.ndarray, config: SegmentConfig, size: tuple[int, int]):
        self.config = config
        self.height, self.width = size
        self.shape = working_shape(self.height, self.width, config.max_side)
        small = image if image.shape[:2] == self.shape else working_image(image, config.max_side)
        self.uniform = not np.ptp(small.reshape(-1, 3), axis=0).any()
        self.features = colour_features(small, config.colour_space)
        self.pixels = self.features.reshape(-1, 3)
        self._graph: PairwiseGraph | None = None

    @property
    def graph(self) -> PairwiseGraph:
        if self._graph is None:
            self._graph = PairwiseGraph(self.features, self.config.gamma, self.config.connectivity)
        return self._graph

    def to_full(self, mask: np.ndarray) -> np.ndarray:
        """Working-resolution bool mask -> bool ``[H, W]``."""
        if mask.shape == (self.height, self.width):
            return mask
        size = (self.width, self.height)
        if self.config.mask_resize == "nearest":
            return cv2.resize(mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).reshape(
                self.height, self.width).astype(bool)
        up = cv2.resize(mask.view(np.uint8) * np.uint8(255), size, interpolation=cv2.INTER_LINEAR)
        return up.reshape(self.height, self.width) >= 128


def _fit(ctx: _ImageContext, where: np.ndarray, rng: np.random.Generator) -> ColourModel:
    c = ctx.config
    idx = np.flatnonzero(where)
    keep = subsample(len(idx), c.max_seed_pixels, rng)
    if keep is not None:
        idx = idx[keep]
    return fit_colour_model(ctx.pixels[idx], n_components=c.n_components, covariance_type=c.covariance_type,
                            max_iter=c.gmm_max_iter, init=c.gmm_init, tol=c.gmm_tol, reg_covar=c.reg_covar,
                            random_state=c.random_state, backend=c.gmm_backend)


def _cut(ctx: _ImageContext, fg: np.ndarray, bg: np.ndarray, timings: dict, sure_fg: np.ndarray | None = None,
         prior: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The colour models + graph cut loop at the working resolution -> bool mask.

    ``sure_fg``: the pixels fixed to foreground (default ``fg``, see ``q_fg_hard``); ``prior``:
    extra (foreground, background) unary costs (``map_weight``)."""
    c = ctx.config
    rng = np.random.default_rng(c.random_state)
    fit_fg, fit_bg = fg, (bg if c.bg_fit == "seeds" else ~fg)
    mask = fg
    for _ in range(c.iterations):
        t = time.perf_counter()
        cost_fg = _fit(ctx, fit_fg, rng).cost(ctx.pixels).reshape(ctx.shape)
        cost_bg = _fit(ctx, fit_bg, rng).cost(ctx.pixels).reshape(ctx.shape)
        if prior is not None:
            cost_fg, cost_bg = cost_fg + prior[0], cost_bg + prior[1]
        t2 = time.perf_counter()
        timings["colour_models"] += t2 - t
        hard = (fg if sure_fg is None else sure_fg, bg) if c.hard_seeds else (None, None)
        new = ctx.graph.cut(cost_fg, cost_bg, *hard)
        timings["graph_cut"] += time.perf_counter() - t2
        if not new.any() or new.all():  # nothing left to re-fit one of the models on
            return new
        mask = new
        fit_fg, fit_bg = mask, ~mask
    return mask


def _whole(ctx_or_size, flag: str, timings: dict) -> Segmentation:
    h, w = ctx_or_size
    box = np.array([0.0, 0.0, float(w), float(h)])
    return Segmentation(np.ones((h, w), bool), box, box[None].copy(), flag, timings)


def _boxes(ctx: _ImageContext, mask_small: np.ndarray, saliency_small: np.ndarray, flag: str | None,
           timings: dict) -> Segmentation:
    c = ctx.config
    t = time.perf_counter()
    mask = ctx.to_full(mask_small)
    if not mask.any():  # a mask that vanished in the upsampling: keep its pixels at the nearest positions
        mask = cv2.resize(mask_small.view(np.uint8), (ctx.width, ctx.height),
                          interpolation=cv2.INTER_NEAREST).reshape(ctx.height, ctx.width).astype(bool)
    labels, boxes, _ = components(mask, c.box_connectivity, with_labels=c.box_rule == "mass")
    if c.box_rule == "largest":
        box = boxes[0]
    elif c.box_rule == "union":
        box = mask_box(mask)
    else:  # "mass": the saliency of each working pixel goes to the component under its centre
        h, w = ctx.shape
        ys = ((np.arange(h) + 0.5) * ctx.height / h).astype(np.intp)
        xs = ((np.arange(w) + 0.5) * ctx.width / w).astype(np.intp)
        weights = saliency_small - saliency_small.min()
        mass = np.bincount(labels[ys[:, None], xs[None, :]].ravel(), weights=weights.ravel(),
                           minlength=len(boxes) + 1)[1:]
        box = boxes[int(np.argmax(mass))] if mass.max() > 0 else boxes[0]
    timings["boxes"] += time.perf_counter() - t
    return Segmentation(mask, np.asarray(box, dtype=np.float64), boxes, flag, timings)


def _seeds(small: np.ndarray, config: SegmentConfig, q_fg: float) -> tuple[np.ndarray, np.ndarray]:
    """(fg, bg) seeds of a working-resolution map by ``config.seed_rule`` with this foreground level."""
    if config.seed_rule == "fraction":
        return fraction_seeds(small, q_fg / 100.0, config.q_bg / 100.0)
    return seed_masks(small, q_fg, config.q_bg)


def _unaries(small: np.ndarray, config: SegmentConfig) -> tuple[np.ndarray | None, tuple | None]:
    """(the pixels fixed to foreground when ``q_fg_hard`` is set, else None; the map prior of
    ``map_weight``, else None): the optional arguments of :func:`_cut`."""
    sure = None if config.q_fg_hard is None else _seeds(small, config, config.q_fg_hard)[0]
    prior = map_prior(small, config.map_weight) if config.map_weight > 0 else None
    return sure, prior


def segment(image: np.ndarray, saliency: np.ndarray, config: SegmentConfig | None = None,
            size: tuple[int, int] | None = None) -> list[Segmentation]:
    """Segment an image once per saliency map and box the object.

    The two steps :func:`prepare_maps` (the maps on the working grid) and
    :func:`segment_prepared` (the cuts), one after the other.

    Args:
        image: uint8 RGB ``[H, W, 3]``, or (with ``size``) its :func:`wsloc.segment.seeds.working_image`.
        saliency: float ``[K, h, w]`` (or ``[h, w]`` for one map; numpy or torch), any
            resolution, any scale; NaN/inf allowed (see the module docstring).
        config: options; ``SegmentConfig()`` by default.
        size: ``(H, W)`` of the image when ``image`` is its working copy (the same results
            as the full image gives); None: ``image`` is the image.

    Returns:
        One :class:`Segmentation` per map, in order. The pairwise graph of the image is
        built once and shared by all maps.

    Raises:
        MethodError: malformed image or saliency array (wrong shape or dtype).
    """
    config = SegmentConfig() if config is None else config
    image = _check_image(image)
    size = image.shape[:2] if size is None else size
    return segment_prepared(image, prepare_maps(saliency, size, config), config)


def segment_prepared(image: np.ndarray, prepared: PreparedMaps, config: SegmentConfig | None = None
                     ) -> list[Segmentation]:
    """The second step of :func:`segment`: the cuts and boxes of maps made by :func:`prepare_maps`.

    Args:
        image: uint8 RGB ``[H, W, 3]`` of size ``prepared.size``, or its working copy.
        prepared: the image's :class:`PreparedMaps`, made with the same ``config``.
        config: options; ``SegmentConfig()`` by default.

    Returns:
        One :class:`Segmentation` per map, in order (the same as :func:`segment` gives).

    Raises:
        MethodError: malformed image, or an image or maps that do not fit ``prepared.size``.
    """
    config = SegmentConfig() if config is None else config
    image = _check_image(image)
    t0 = time.perf_counter()
    height, width = prepared.size
    shape = working_shape(height, width, config.max_side)
    if image.shape[:2] not in ((height, width), shape):
        raise MethodError(f"segment: an image of shape {image.shape} is neither the image of size {height}x{width} "
                          "nor its working copy")
    if prepared.maps.shape[1:] != shape:
        raise MethodError(f"segment: prepared maps of shape {prepared.maps.shape} are not on the working grid "
                          f"{shape} of a {height}x{width} image (prepared with another max_side?)")
    tiny = height < config.min_side or width < config.min_side
    ctx = None if tiny else _ImageContext(image, config, (height, width))
    shared = time.perf_counter() - t0
    results = []
    for k in range(len(prepared)):
        timings = {"prepare": shared + prepared.seconds[k], "colour_models": 0.0, "graph_cut": 0.0, "boxes": 0.0}
        shared = 0.0
        flag = prepared.flags[k]
        if ctx is None or flag in _WHOLE_FLAGS:
            results.append(_whole((height, width), "tiny_image" if ctx is None else flag, timings))
        elif ctx.uniform and config.algorithm == "graphcut":
            results.append(_whole((height, width), "uniform_image", timings))
        else:
            results.append(_segment_map(ctx, prepared.maps[k], flag, timings))
    return results


def _segment_map(ctx: _ImageContext, small: np.ndarray, flag: str | None, timings: dict) -> Segmentation:
    """One prepared (finite, not flat) working-grid map -> its segmentation."""
    config = ctx.config
    t = time.perf_counter()
    if config.algorithm == "threshold":
        mask = threshold_mask(small, config.threshold)
        timings["prepare"] += time.perf_counter() - t
        return _boxes(ctx, mask, small, flag, timings)
    fg, bg = _seeds(small, config, config.q_fg)
    timings["prepare"] += time.perf_counter() - t
    if fg.sum() < config.min_seed_pixels or bg.sum() < config.min_seed_pixels:
        mask = ~bg
        flag = "empty_seeds"
    else:
        mask = _cut(ctx, fg, bg, timings, *_unaries(small, config))
        if not mask.any():
            mask = fg
            flag = "empty_mask"
    return _boxes(ctx, mask, small, flag, timings)
