"""Maps fused over input scales and mirror images.

A class activation map of a 224 px input is 7 x 7: an object smaller than a cell is a blur.
Running the same network on the image enlarged (448 px: a 14 x 14 map) and mirrored, and
averaging the normalised maps, keeps the coarse map's hold on the whole object and adds the
finer map's edges. :func:`multiscale` does this for any method of :func:`attribute`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import MethodError
from ..normalize import normalize_maps
from .core import SaliencyMaps, upsample_maps
from .methods import attribute


#: Bounds of ``scales``: a factor of 16 is a 3584 px input for a 224 px network (256 times its
#: activations); more scales than 16 add nothing but time.
MAX_SCALE = 16.0
MAX_SCALES = 16


def check_scales(scales, flip) -> tuple[tuple[float, ...], bool]:
    """Validate the ``scales`` / ``flip`` options -> (tuple of positive floats, bool)."""
    if isinstance(scales, (int, float)):
        scales = (scales,)
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise MethodError(f"scales={scales!r}: expected a list of positive numbers") from None
    if not scales or any(not (s > 0 and math.isfinite(s)) for s in scales):
        raise MethodError(f"scales={scales!r}: expected a non-empty list of positive finite numbers")
    if max(scales) > MAX_SCALE or len(scales) > MAX_SCALES:
        raise MethodError(f"scales={scales!r}: at most {MAX_SCALES} scales of at most {MAX_SCALE:g} each (the "
                          "network's memory grows with the square of the largest)")
    if not isinstance(flip, bool):
        raise MethodError(f"flip={flip!r}: expected True or False")
    return scales, flip


def multiscale(model, x, targets=None, method: str = "gradient", top_k: int = 5, *,
               scales: Sequence[float] = (1.0,), flip: bool = False, max_batch: int | None = None,
               max_pixels: int | None = None, **options) -> SaliencyMaps:
    """A method's maps averaged over rescaled (and optionally mirrored) copies of the input.

    With ``scales=(1.0,)`` and ``flip=False`` this is exactly :func:`attribute` (raw maps).
    Otherwise every run's maps are resized (bilinear) to the input's ``H x W``, normalised by
    :func:`wsloc.normalize.normalize_maps` (rule ``"peak"``: negatives clipped, divided by
    the maximum) and averaged, so the result lies in ``[0, 1]``.

    Args:
        model, x, targets, method, top_k, max_batch, options: as for :func:`attribute`
            (``x`` float ``[N, C, H, W]``).
        scales: input size factors; the input is resized bilinearly by each (``2.0``: a
            448 px input from a 224 px one). With ``targets=None`` the classes are the
            top-k of the first scale's run (put the network's own size, 1.0, first), and
            every other run explains the same classes.
        flip: also run each scale on the left-right mirrored input (its maps mirrored back).
        max_pixels: None, or at most this many input pixels per network call: each scale's
            batch goes through in chunks of ``max(1, max_pixels // (h w))`` images (and at
            most ``max_batch``). On a CPU a memory-bound network runs faster per image in
            small chunks (:data:`wsloc.saliency.core.CPU_FORWARD_PIXELS`).

    Returns:
        :class:`SaliencyMaps`: maps float32 ``[N, K, H, W]``; targets, scores and logits
        from the first scale's unmirrored run; no attributions.
    """
    scales, flip = check_scales(scales, flip)
    limits = (max_batch, max_pixels)
    first = _run(model, x, targets, method, top_k, limits, options, scales[0], False)
    if len(scales) == 1 and not flip:
        return first
    size = tuple(x.shape[-2:])
    total = normalize_maps(upsample_maps(first.maps, size), "peak")
    runs = 1
    for i, s in enumerate(scales):
        for mirrored in ((False, True) if flip else (False,)):
            if i == 0 and not mirrored:
                continue
            run = _run(model, x, first.targets, method, top_k, limits, options, s, mirrored)
            total += normalize_maps(upsample_maps(run.maps, size), "peak")
            runs += 1
    return SaliencyMaps(maps=total / runs, targets=first.targets, scores=first.scores, logits=first.logits,
                        attributions=None, method=first.method)


def _run(model, x, targets, method, top_k, limits, options, scale, mirrored) -> SaliencyMaps:
    xs = x
    if scale != 1.0:
        h, w = x.shape[-2:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1.0)
        if x.is_contiguous(memory_format=torch.channels_last):
            xs = xs.contiguous(memory_format=torch.channels_last)
    if mirrored:
        xs = xs.flip(-1)
    max_batch, max_pixels = limits
    if max_pixels is not None:
        chunk = max(1, int(max_pixels) // (xs.shape[-2] * xs.shape[-1]))
        max_batch = chunk if max_batch is None else min(max_batch, chunk)
    try:
        out = attribute(model, xs, targets, method, top_k, max_batch=max_batch, **options)
    except (MethodError, torch.OutOfMemoryError):
        raise
    except Exception as exc:  # e.g. ViT's "Wrong image height!" assertion, a Linear after a fixed-size flatten
        if scale == 1.0:
            raise
        raise MethodError(f"scales: the model does not run on the input resized by {scale:g} to "
                          f"{xs.shape[-2]}x{xs.shape[-1]} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          f"it takes a fixed {x.shape[-2]}x{x.shape[-1]} input: use scales=[1]") from None
    if mirrored:
        out.maps = out.maps.flip(-1)
    return out
