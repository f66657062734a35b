"""Maps fused over input scales and mirror images.

A class activation map of a 224 px input is 7 x 7: an object smaller than a cell is a blur.
Running the same network on the image enlarged (448 px: a 14 x 14 map) and mirrored, and
averaging the normalised maps, keeps the coarse map's hold on the whole object and adds the
finer map's edges. :func:`multiscale` does this for any method of :func:`attribute`.
:func:`native_multiscale` does it on each photo at its own aspect ratio instead of the squashed
input (the network at a chosen longer side and its multiples; classes from the squashed pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import MethodError
from ..normalize import normalize_maps
from .core import SaliencyMaps, images_per_call, upsample_maps
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
               max_pixels: int | None = None, base_size: Sequence[int] | None = None, fusion: str = "mean",
               weights: Sequence[float] | None = None, **options) -> SaliencyMaps:
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
        base_size: None (the scales are factors of ``x``'s own ``H x W``), or ``(h, w)``: the
            scales are factors of this size instead, and ``x`` is the photos made at a larger
            size from their own pixels (``resize_from="photo"`` of
            :class:`wsloc.config.SaliencyConfig`): a scale whose size is ``x``'s runs on ``x``
            itself, a smaller one on ``x`` shrunk by area averaging, a larger one on ``x``
            enlarged bilinearly. The maps are fused on the ``base_size`` grid.
        fusion: how the normalised maps of the runs are combined: ``"mean"`` (their weighted
            average) or ``"geometric"`` (their weighted geometric mean, ``prod m_i ** w_i``: a
            pixel is high only where every scale is high, so a fine scale's sharp peak cuts
            a coarse scale's wide blob down to the object without moving it).
        weights: None (equal), or one positive weight per scale (a mirrored run has its
            scale's weight); normalised to sum to 1.

    Returns:
        :class:`SaliencyMaps`: maps float32 ``[N, K, H, W]`` (``H x W``: ``base_size``, else
        ``x``'s); targets, scores and logits from the first scale's unmirrored run; no
        attributions. One scale without ``flip``: that run's raw maps.
    """
    scales, flip = check_scales(scales, flip)
    shares = check_fusion(fusion, weights, len(scales))
    limits = (max_batch, max_pixels)
    base = tuple(x.shape[-2:]) if base_size is None else (int(base_size[0]), int(base_size[1]))
    resize = "input" if base_size is None else "photo"
    first = _run(model, x, targets, method, top_k, limits, options, scales[0], False, base, resize)
    if len(scales) == 1 and not flip:
        return first
    runs = [(first.maps, 0)]
    for i, s in enumerate(scales):
        for mirrored in ((False, True) if flip else (False,)):
            if i == 0 and not mirrored:
                continue
            runs.append((_run(model, x, first.targets, method, top_k, limits, options, s, mirrored, base,
                              resize).maps, i))
    return SaliencyMaps(maps=fuse_maps(runs, base, fusion, shares), targets=first.targets, scores=first.scores,
                        logits=first.logits, attributions=None, method=first.method)


FUSIONS = ("mean", "geometric")


def check_weights(weights, n_scales: int | None = None) -> tuple[float, ...]:
    """Validate per-scale ``weights`` (``n_scales`` of them when given) -> a tuple of positive finite floats."""
    want = "one positive number per scale" if n_scales is None else f"{n_scales} positive finite numbers (one per scale)"
    try:
        w = tuple(float(v) for v in ((weights,) if isinstance(weights, (int, float)) else weights))
    except (TypeError, ValueError):
        raise MethodError(f"weights={weights!r}: expected {want}") from None
    if not w or (n_scales is not None and len(w) != n_scales) or any(not (v > 0 and math.isfinite(v)) for v in w):
        raise MethodError(f"weights={weights!r}: expected {want}")
    return w


def check_fusion(fusion, weights, n_scales: int) -> tuple[float, ...] | None:
    """Validate ``fusion`` / ``weights`` -> None (equal weights) or the weights normalised to sum to 1."""
    if fusion not in FUSIONS:
        raise MethodError(f"fusion={fusion!r}: expected one of {', '.join(FUSIONS)}")
    if weights is None:
        return None
    w = check_weights(weights, n_scales)
    return tuple(v / sum(w) for v in w)


def fuse_maps(runs, size, fusion: str = "mean", shares: Sequence[float] | None = None) -> torch.Tensor:
    """Fuse the maps of several runs on one grid.

    Args:
        runs: ``(maps [N, K, h, w], scale index)`` per run (sizes may differ).
        size: ``(H, W)`` of the fused grid; each run is resized to it bilinearly and normalised
            by rule ``"peak"`` (:func:`wsloc.normalize.normalize_maps`: values in ``[0, 1]``).
        fusion: ``"mean"`` or ``"geometric"`` (see :func:`multiscale`).
        shares: None (every run the same weight) or per scale index its weight (summing to 1;
            a scale's runs share its weight).

    Returns:
        float32 ``[N, K, H, W]`` in ``[0, 1]``.
    """
    per_scale: dict[int, int] = {}
    for _, i in runs:
        per_scale[i] = per_scale.get(i, 0) + 1
    if shares is None:
        weights = [1.0 / len(runs)] * len(runs)
    else:
        weights = [shares[i] / per_scale[i] for _, i in runs]
    maps = [normalize_maps(upsample_maps(m, size), "peak") for m, _ in runs]
    if fusion == "geometric":
        total = maps[0].pow(weights[0])
        for m, w in zip(maps[1:], weights[1:]):
            total = total * m.pow(w)
        return total
    if shares is None:  # the plain average, summed in run order (the maps of earlier versions bit for bit)
        total = maps[0]
        for m in maps[1:]:
            total = total + m
        return total / len(maps)
    total = maps[0] * weights[0]
    for m, w in zip(maps[1:], weights[1:]):
        total = total + m * w
    return total


def fuse_classes(maps: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """One map per image from its K class maps, weighted by the classes' probabilities.

    Args:
        maps: float ``[N, K, H, W]`` (any scale; each is normalised by rule ``"peak"``,
            :func:`wsloc.normalize.normalize_maps`).
        probs: float ``[N, K]``, non-negative (softmax probabilities of the K classes).

    Returns:
        float32 ``[N, K, H, W]`` in ``[0, 1]``: for every class of image n the same map,
        ``sum_j p_nj M_nj / sum_j p_nj`` (equal weights when the probabilities sum to 0).
    """
    if maps.ndim != 4 or tuple(probs.shape) != tuple(maps.shape[:2]):
        raise MethodError(f"fuse_classes: maps [N, K, H, W] and probs [N, K] expected, got "
                          f"{tuple(maps.shape)} and {tuple(probs.shape)}")
    p = probs.detach().float().to(maps.device).clamp(min=0)
    total = p.sum(dim=1, keepdim=True)
    w = torch.where(total > 0, p / total.clamp(min=torch.finfo(torch.float32).tiny), 1.0 / p.shape[1])
    fused = (normalize_maps(maps, "peak") * w[..., None, None]).sum(dim=1, keepdim=True)
    return fused.expand_as(maps).contiguous()


def native_multiscale(model, images, preprocess, targets=None, method: str = "grad_cam", top_k: int = 5, *,
                      long_side: int = 224, scales: Sequence[float] = (1.0,), flip: bool = False,
                      squashed: bool = False, max_batch: int | None = None, **options) -> list[SaliencyMaps]:
    """Each photo's maps at its own aspect ratio, fused over a pyramid of sizes (``aspect="native"``).

    Classes: ``targets``, or (None) the top-k of the classification pass: the network on
    ``preprocess.batch(images)``, the photos squashed to its input as it was trained (it gives
    the scores and logits too). Maps: per photo and scale ``s`` the method runs on the photo
    resized from its own pixels to a longer side of ``s * long_side``, both sides a multiple of 32
    (:meth:`wsloc.models.Preprocess.native`); the runs are fused as :func:`multiscale` fuses
    (each resized bilinearly to the first run's input, normalised by rule ``"peak"``, averaged).
    One run: the method's raw map.

    Args:
        model: as for :func:`attribute`; it must run on any input size (fully convolutional up to
            a global pooling, as EfficientNet-Lite with its "same" padding).
        images: uint8 RGB ``[H, W, 3]`` arrays, sizes may differ.
        preprocess: the network's :class:`wsloc.models.Preprocess`.
        targets: None, or int ``[N]`` / ``[N, K]`` classes to explain.
        method, top_k, max_batch, options: as for :func:`attribute`.
        long_side: longer side in pixels of the scale-1 input.
        scales: factors of ``long_side`` (put the finest first: its input is the fused map's grid).
        flip: also run each scale on the left-right mirrored photo.
        squashed: also fuse the map of the classification pass (the method run on the squashed
            input, resized back to the photo's aspect); for CAM methods it costs no extra pass.

    Returns:
        One :class:`SaliencyMaps` per photo: maps float32 ``[1, K, h, w]`` (``h / w`` the photo's
        aspect up to the rounding), targets ``[1, K]``, scores and logits of the classification
        pass; no attributions.
    """
    scales, flip = check_scales(scales, flip)
    if isinstance(long_side, bool) or not isinstance(long_side, int) or long_side < 1:
        raise MethodError(f"long_side={long_side!r}: expected a positive number of pixels")
    if len(images) == 0:
        raise MethodError("no images to explain (an empty list)")
    targets, logits, square = _classify(model, preprocess.batch(images), targets, method, top_k, max_batch,
                                        options, squashed)
    out = []
    for i, image in enumerate(images):
        t = targets[i:i + 1]
        runs = [_run(model, preprocess.native(image, max(1, round(s * long_side)))[None], t, method, top_k,
                     (max_batch, None), options, 1.0, mirrored).maps
                for s in scales for mirrored in ((False, True) if flip else (False,))]
        runs += [] if square is None else [square[i:i + 1]]
        if len(runs) == 1:
            maps = runs[0].float()
        else:
            maps = fuse_maps([(r, 0) for r in runs], tuple(runs[0].shape[-2:]))
        out.append(SaliencyMaps(maps=maps, targets=t, scores=logits[i:i + 1].gather(1, t), logits=logits[i:i + 1],
                                attributions=None, method=method))
    return out


def _classify(model, x, targets, method, top_k, max_batch, options, squashed) -> tuple:
    """The classification pass on the squashed batch ``x``: (targets [N, K], logits [N, Cl], its maps
    [N, K, h, w] with ``squashed``, else None)."""
    from .core import as_net, resolve_targets

    if squashed:
        run = _run(model, x, targets, method, top_k, (max_batch, None), options, 1.0, False)
        if run.logits is not None:
            return run.targets, run.logits.float(), run.maps
    net = as_net(model)
    with torch.no_grad():
        logits = net.module(x.to(net.device)).float()
    t = resolve_targets(targets, logits, top_k)
    return t, logits, (run.maps if squashed else None)


def scaled_input(x: torch.Tensor, scale: float, base: tuple[int, int] | None = None,
                 resize: str = "input") -> torch.Tensor:
    """The input of one scale: ``x`` ``[N, C, H, W]`` at ``round(base * scale)`` (``base``: ``x``'s own size
    when None). ``resize="input"``: bilinear (antialiased when shrinking), ``x`` itself at scale 1;
    ``"photo"``: ``x`` itself when it already has that size, area averaging when shrinking, bilinear
    when enlarging (see :func:`multiscale`'s ``base_size``)."""
    h, w = x.shape[-2:]
    bh, bw = (h, w) if base is None else base
    size = (max(1, round(bh * scale)), max(1, round(bw * scale)))
    if size == (h, w) and (resize == "photo" or scale == 1.0):
        return x
    if resize == "photo" and size[0] <= h and size[1] <= w:
        xs = F.interpolate(x, size=size, mode="area")
    else:
        xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                           antialias=resize == "input" and scale < 1.0)
    if x.is_contiguous(memory_format=torch.channels_last):
        xs = xs.contiguous(memory_format=torch.channels_last)
    return xs


def _run(model, x, targets, method, top_k, limits, options, scale, mirrored, base=None,
         resize="input") -> SaliencyMaps:
    xs = scaled_input(x, scale, base, resize)
    if mirrored:
        xs = xs.flip(-1)
    max_batch, max_pixels = limits
    chunk = images_per_call(max_pixels, xs.shape[-2:])
    if chunk is not None:
        max_batch = chunk if max_batch is None else min(max_batch, chunk)
    try:
        out = attribute(model, xs, targets, method, top_k, max_batch=max_batch, **options)
    except (MethodError, torch.OutOfMemoryError):
        raise
    except Exception as exc:  # e.g. ViT's "Wrong image height!" assertion, a Linear after a fixed-size flatten
        if xs is x:
            raise
        raise MethodError(f"scales: the model does not run on the input resized by {scale:g} to "
                          f"{xs.shape[-2]}x{xs.shape[-1]} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          f"it takes a fixed {(base or x.shape[-2:])[0]}x{(base or x.shape[-2:])[1]} input: use scales=[1]"
                          ) from None
    if mirrored:
        out.maps = out.maps.flip(-1)
    return out
