"""Zoomed-in maps for small objects (issue 12).

A 224 px map blurs an object smaller than a few of its cells. :func:`zoom_map` crops the photo, from
its own pixels, around the region where a first map (today's fused Grad-CAM) is at least ``level`` of
its maximum, runs the method again for the same class on the crop at a longer side of ``side`` px (the
crop's own aspect, :meth:`wsloc.models.Preprocess.native`), and fuses the crop's map, pasted back into
the image frame, with the first map. It does so only when the first map's segmentation says the object
is small (its box covers less than ``max_share`` of the image, :func:`should_zoom`): large objects keep
their first map and cost no extra pass.

The measured setting (``scripts/bench_zoom_maps.py``, BENCHMARKS.md, issue 12) is the default of
:func:`zoom_map`: ``level=0.6, margin=0.5, side=640, max_share=0.2``.

Building blocks, each usable alone: :func:`zoom_region` (the level box), :func:`zoom_crop` (padded,
clipped integer crop), :func:`should_zoom` (the size gate), :func:`paste_zoom` (the fusion).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import MethodError

#: The measured defaults of :func:`zoom_map` (see the module docstring).
ZOOM_LEVEL = 0.6
ZOOM_MARGIN = 0.5
ZOOM_SIDE = 640
ZOOM_MAX_SHARE = 0.2
#: Longer side of the image-frame grid the fused map is built on (the segmenter then resizes it).
PASTE_GRID = 224


def box_share(box, size) -> float:
    """Area of an xyxy box (continuous pixel coordinates) / area of an image of ``size = (H, W)``: a float
    in [0, 1] for a box inside the image (a degenerate box: 0)."""
    h, w = size
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]) / (h * w))


def should_zoom(box, size, max_share: float = ZOOM_MAX_SHARE) -> bool:
    """The size gate: whether the object boxed by ``box`` (xyxy, e.g. the box of the first map's mask)
    covers less than ``max_share`` of the image of ``size = (H, W)``."""
    return box_share(box, size) < max_share


def _check_map(saliency) -> np.ndarray:
    """float32 [h, w] finite map with a positive maximum, or MethodError."""
    m = saliency.detach().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency)
    m = np.squeeze(m)
    if m.ndim != 2 or min(m.shape) < 1:
        raise MethodError(f"zoom: expected one map [h, w], got shape {np.shape(saliency)}")
    m = m.astype(np.float32)
    if not np.isfinite(m).all() or not m.max() > 0:
        raise MethodError("zoom: the map must be finite with a positive maximum")
    return m


def zoom_region(saliency, size, level: float = ZOOM_LEVEL) -> np.ndarray:
    """float64 [4] xyxy box, in the frame of an image of ``size = (H, W)``, of all pixels of ``saliency``
    (float [h, w], any grid covering the whole image, e.g. the 224 x 224 map of the squashed photo) at
    >= ``level`` of its maximum (their union, cell edges scaled to the image)."""
    m = _check_map(saliency)
    if not 0.0 <= level <= 1.0:
        raise MethodError(f"zoom: level={level!r}: expected a fraction of the map's maximum in [0, 1]")
    gh, gw = m.shape
    rows, cols = np.nonzero(m >= level * m.max())
    h, w = size
    return np.array([cols.min() * w / gw, rows.min() * h / gh, (cols.max() + 1) * w / gw,
                     (rows.max() + 1) * h / gh], np.float64)


def zoom_crop(region, size, margin: float = ZOOM_MARGIN, min_side: int = 16) -> tuple[int, int, int, int]:
    """Integer crop ``(x0, y0, x1, y1)`` (pixels ``[y0:y1, x0:x1]``): the xyxy ``region`` padded by
    ``margin`` times its width / height on each side, at least ``min_side`` px a side (about its centre),
    clipped to the image of ``size = (H, W)``; never empty."""
    if margin < 0:
        raise MethodError(f"zoom: margin={margin!r}: expected a non-negative fraction of the region's sides")
    h, w = size
    x0, y0, x1, y1 = (float(v) for v in region)
    px, py = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0, x1, y1 = x0 - px, y0 - py, x1 + px, y1 + py
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = max(x1 - x0, min(min_side, w)) / 2, max(y1 - y0, min(min_side, h)) / 2
    x0, x1, y0, y1 = cx - hw, cx + hw, cy - hh, cy + hh
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _resize(m: np.ndarray, shape) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(m, np.float32), (int(shape[1]), int(shape[0])),
                      interpolation=cv2.INTER_LINEAR)


def _peak(m: np.ndarray) -> np.ndarray:
    m = np.clip(np.asarray(m, np.float32), 0, None)
    top = float(m.max())
    return m / top if top > 0 else m


def paste_zoom(saliency, crop_map, crop, size, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The fused map in the image frame: float32 ``shape`` (default: the image's aspect at a longer side
    of :data:`PASTE_GRID`), values in [0, 1].

    ``saliency`` (float [h, w], covering the whole image of ``size = (H, W)``) and ``crop_map`` (float
    [h', w'], covering the pixels ``crop = (x0, y0, x1, y1)``) are each resized bilinearly to their extent
    on the grid, clipped at 0 and divided by their maximum; the crop's map is zero outside the crop; the
    result is their mean."""
    from ..segment.seeds import working_shape

    h, w = size
    shape = working_shape(h, w, PASTE_GRID) if shape is None else tuple(int(v) for v in shape)
    x0, y0, x1, y1 = (int(v) for v in crop)
    gy0, gx0 = int(round(y0 * shape[0] / h)), int(round(x0 * shape[1] / w))
    gy1, gx1 = max(int(round(y1 * shape[0] / h)), gy0 + 1), max(int(round(x1 * shape[1] / w)), gx0 + 1)
    base = _peak(_resize(_check_map(saliency), shape))
    pasted = np.zeros(shape, np.float32)
    pasted[gy0:gy1, gx0:gx1] = _peak(_resize(np.squeeze(np.asarray(crop_map, np.float32)), (gy1 - gy0, gx1 - gx0)))
    return (base + pasted) / 2


@dataclass
class ZoomedMap:
    """Result of :func:`zoom_map`.

    Attributes:
        maps: float32 [h, w] map: the fused map on the image-frame grid (:func:`paste_zoom`) when
            ``zoomed``, else the first map itself (unchanged, float32).
        zoomed: whether the gate let the zoom run.
        crop: ``(x0, y0, x1, y1)`` pixels cropped, or None.
        pixels: forward-pass pixels of the crop's input (0 when not zoomed).
    """

    maps: np.ndarray
    zoomed: bool
    crop: tuple[int, int, int, int] | None = None
    pixels: int = 0


def zoom_map(model, image: np.ndarray, preprocess, saliency, target: int, box=None, *, level: float = ZOOM_LEVEL,
             margin: float = ZOOM_MARGIN, side: int = ZOOM_SIDE, max_share: float = ZOOM_MAX_SHARE,
             method: str = "grad_cam", shape: tuple[int, int] | None = None, **options) -> ZoomedMap:
    """One photo's map for one class, zoomed in on a small object (see the module docstring).

    Args:
        model: the classifier (as for :func:`wsloc.saliency.attribute`); it must run on any input size.
        image: uint8 RGB ``[H, W, 3]`` photo at its own resolution (the crop is taken from these pixels).
        preprocess: the network's :class:`wsloc.models.Preprocess`.
        saliency: the first map, float ``[h, w]`` covering the whole photo (e.g. the default preset's
            fused map of the squashed input).
        target: the class to explain on the crop (the class of ``saliency``).
        box: xyxy box of the first map's mask (:class:`wsloc.segment.Segmentation`.box) for the gate;
            None: no gate (always zoom).
        level, margin: the crop (:func:`zoom_region`, :func:`zoom_crop`).
        side: longer side in px of the crop's network input (its own aspect, sides multiples of 32).
        max_share: the gate (:func:`should_zoom`).
        method, options: as for :func:`wsloc.saliency.attribute`.
        shape: grid of the fused map (:func:`paste_zoom`).

    Returns:
        :class:`ZoomedMap`; segment its ``maps`` with the image as usual.
    """
    from .methods import attribute

    first = _check_map(saliency)
    size = image.shape[:2]
    if box is not None and not should_zoom(box, size, max_share):
        return ZoomedMap(maps=first, zoomed=False)
    crop = zoom_crop(zoom_region(first, size, level), size, margin)
    x0, y0, x1, y1 = crop
    x = preprocess.native(np.ascontiguousarray(image[y0:y1, x0:x1]), side)[None]
    run = attribute(model, x, torch.tensor([[int(target)]]), method, 1, **options)
    crop_map = run.maps[0, 0].detach().float().cpu().numpy()
    return ZoomedMap(maps=paste_zoom(first, crop_map, crop, size, shape), zoomed=True, crop=crop,
                     pixels=int(x.shape[-2] * x.shape[-1]))
