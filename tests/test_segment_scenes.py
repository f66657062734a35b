"""wsloc.segment on synthetic scenes with a known object, and agreement with OpenCV's GrabCut.

Each scene: a textured object (two colours in noisy stripes, an ellipse with a bump) on a
textured background of two other colours (smooth random blobs), pixel noise on both.
The saliency map is a blurred copy of the object region plus uniform noise, at a lower
resolution than the image (as a network's map would be).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsloc.boxes import mask_box
from wsloc.evaluate.iou import box_iou
from wsloc.segment import SegmentConfig, segment

OBJECT_PALETTES = [((200, 60, 50), (230, 150, 40)), ((210, 200, 60), (160, 40, 140)), ((240, 240, 235), (190, 90, 60))]
BACKGROUND_PALETTES = [((70, 120, 60), (120, 90, 150)), ((60, 80, 130), (150, 150, 110)),
                       ((110, 100, 90), (60, 130, 110))]


def make_scene(seed: int, shape=(150, 200), map_size=(56, 56)):
    """(image uint8 [H,W,3], object mask bool [H,W], saliency float32 [h,w]) of one synthetic scene."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    cy, cx = rng.uniform(0.38, 0.62) * h, rng.uniform(0.38, 0.62) * w
    a, b = rng.uniform(0.18, 0.28) * h, rng.uniform(0.18, 0.28) * w
    t = rng.uniform(0, np.pi)
    u, v = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t), -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    obj = (u / b) ** 2 + (v / a) ** 2 < 1
    obj |= ((xx - cx - 0.8 * b * np.cos(t)) ** 2 + (yy - cy - 0.8 * b * np.sin(t)) ** 2) < (0.45 * a) ** 2

    fg_pal = np.array(OBJECT_PALETTES[seed % 3], float)
    bg_pal = np.array(BACKGROUND_PALETTES[(seed // 3) % 3], float)
    stripes = (np.sin((u * 0.35 + v * 0.2) + rng.normal(0, 0.3, (h, w))) > 0)[..., None]
    fg_tex = np.where(stripes, fg_pal[0], fg_pal[1])
    blobs = cv2.GaussianBlur(rng.normal(size=(h, w)), (0, 0), 6)
    bg_tex = np.where((blobs > 0)[..., None], bg_pal[0], bg_pal[1])
    image = np.where(obj[..., None], fg_tex, bg_tex) + rng.normal(0, 28, (h, w, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)

    sal = cv2.GaussianBlur(obj.astype(np.float32), (0, 0), 0.06 * max(h, w))
    sal = cv2.resize(sal, map_size[::-1], interpolation=cv2.INTER_AREA)
    sal = sal + 0.25 * rng.random(map_size).astype(np.float32)
    return image, obj, sal


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def true_box(obj: np.ndarray) -> np.ndarray:
    return mask_box(obj)[None]


SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
def test_default_config_recovers_object(seed):
    image, obj, sal = make_scene(seed)
    (seg,) = segment(image, sal[None])
    assert seg.flag is None
    assert seg.mask.shape == obj.shape and seg.mask.dtype == bool
    assert iou(seg.mask, obj) >= 0.9
    assert box_iou(seg.box[None], true_box(obj), "continuous")[0, 0] >= 0.9


@pytest.mark.parametrize("change", [dict(max_side=None), dict(iterations=3), dict(colour_space="lab"),
                                    dict(hard_seeds=False), dict(max_seed_pixels=None), dict(box_rule="mass"),
                                    dict(box_rule="union"), dict(gmm_backend="sklearn", gmm_max_iter=10),
                                    dict(covariance_type="diag"), dict(covariance_type="tied"),
                                    dict(saliency_resize="bilinear", saliency_blur=1.0),
                                    dict(connectivity=4, box_connectivity=4)])
def test_options_recover_object(change):
    image, obj, sal = make_scene(1)
    (seg,) = segment(image, sal[None], SegmentConfig().replace(**change))
    assert iou(seg.mask, obj) >= 0.9
    assert box_iou(seg.box[None], true_box(obj), "continuous")[0, 0] >= 0.9


def test_colour_matters_not_just_the_map():
    """The cut follows the colour boundary, which the blurred map alone does not give:
    thresholding the map at its best level is clearly worse than the segmentation."""
    image, obj, sal = make_scene(2)
    big = cv2.resize(sal, obj.shape[::-1], interpolation=cv2.INTER_LINEAR)
    best_threshold_iou = max(iou(big > np.percentile(big, q), obj) for q in range(50, 100, 2))
    (seg,) = segment(image, sal[None], SegmentConfig(max_side=None))
    assert iou(seg.mask, obj) > best_threshold_iou + 0.03


def test_maps_of_one_image_are_independent():
    """K maps segmented together give the same result as one by one (shared graph, own unaries)."""
    image, obj, sal = make_scene(3)
    other = np.roll(sal, 20, axis=1)[::-1].copy()
    together = segment(image, np.stack([sal, other, sal]))
    alone = [segment(image, m[None])[0] for m in (sal, other)]
    assert np.array_equal(together[0].mask, alone[0].mask)
    assert np.array_equal(together[1].mask, alone[1].mask)
    assert np.array_equal(together[2].mask, together[0].mask)
    assert not np.array_equal(together[1].mask, together[0].mask)


def test_pairwise_graph_built_once_per_image(monkeypatch):
    import wsloc.segment.graphcut as graphcut

    built = []

    class Counting(graphcut.PairwiseGraph):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(graphcut, "PairwiseGraph", Counting)
    image, _, sal = make_scene(4)
    segs = segment(image, np.stack([sal, sal[::-1].copy(), sal[:, ::-1].copy(), sal * 2]))
    assert len(segs) == 4 and len(built) == 1
    assert all(s.timings["graph_cut"] > 0 and s.timings["colour_models"] > 0 for s in segs)


def opencv_grabcut_frozen(image: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """OpenCV GrabCut with colour models fitted on the seeds only and frozen, seeds as hard constraints.

    The models are learnt by GC_INIT_WITH_MASK (iterCount 0: learn and return) on an image
    made of the seed pixels alone; the cut is one GC_EVAL_FREEZE_MODEL pass on the full image.
    """
    seeds = np.concatenate([image[fg], image[bg]])[None]
    seed_mask = np.concatenate([np.full(fg.sum(), cv2.GC_FGD), np.full(bg.sum(), cv2.GC_BGD)]).astype(np.uint8)[None]
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(seeds[..., ::-1]), seed_mask, None, bgd, fgd, 0, cv2.GC_INIT_WITH_MASK)
    mask = np.full(fg.shape, cv2.GC_PR_BGD, np.uint8)
    mask[fg], mask[bg] = cv2.GC_FGD, cv2.GC_BGD
    cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, None, bgd, fgd, 1, cv2.GC_EVAL_FREEZE_MODEL)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


@pytest.mark.parametrize("seed", SEEDS)
def test_agrees_with_opencv_grabcut_on_same_seeds(seed):
    from wsloc.segment.seeds import resize_map, seed_masks

    image, obj, sal = make_scene(seed)
    config = SegmentConfig(max_side=None, colour_space="rgb", iterations=1, hard_seeds=True, gamma=50.0,
                           connectivity=8, max_seed_pixels=None, saliency_resize="bilinear")
    fg, bg = seed_masks(resize_map(sal, obj.shape, "bilinear"), config.q_fg, config.q_bg)
    reference = opencv_grabcut_frozen(image, fg, bg)
    (seg,) = segment(image, sal[None], config)
    assert iou(seg.mask, reference) >= 0.95
    assert iou(reference, obj) >= 0.9  # the reference itself is a sensible segmentation
