"""LayerCAM (Jiang et al. 2021): class activation maps from any layer, and fused over several layers.

At a layer with feature map ``A`` (``[C, h, w]``) and ``G = d logit_c / d A``, LayerCAM weights each
position by its own positive gradient instead of Grad-CAM's channel mean:

    M_c = ReLU( sum_k ReLU(G_kij) * A_kij )

so a mid-level layer (stride 16 or 8: a 28 x 28 or 56 x 56 grid on a 448 px input, where the last
layer has 14 x 14) gives a finer map that still follows the class. At a GAP + linear model's pooled
layer ``G_kij = w_ck / (h w)`` at every position, and LayerCAM is Grad-CAM with the negative weights
dropped (``sum_k ReLU(w_ck) A_kij / (h w)`` for a non-negative ``A``).

Several layers (``layers=("_blocks.10", "_relu_head")``): one forward pass records every layer (the
first one to run becomes an autograd leaf, so nothing before it is differentiated; so does the first of
each parallel branch, e.g. of each member of an ensemble), one backward
pass per class gives the gradients at all of them, and each layer's map, upsampled bilinearly to the
input and divided by its maximum, is fused by ``fuse``: ``"mean"`` or ``"max"`` over the layers. A
single layer's map is returned as it is (not divided by its maximum), as Grad-CAM's is.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import MethodError
from ..normalize import normalize_maps
from .cam import capture, feature_chunks, module_named, token_map
from .core import SaliencyMaps, batch_limit, describe, resolve_targets, upsample_maps
from .methods import register

FUSES = ("mean", "max")


def check_fuse(fuse: str) -> str:
    """``fuse`` if it is one of :data:`FUSES`, else MethodError."""
    if fuse not in FUSES:
        raise MethodError(f"layer_cam: fuse={fuse!r}: expected one of {', '.join(FUSES)}")
    return fuse


def _layer_names(net, layers) -> tuple[str, ...]:
    if layers is None:
        if net.last_conv is None:
            raise MethodError("layer_cam: the model has no spatial feature layer; pass layers=['module.name']")
        return (net.last_conv,)
    if isinstance(layers, str):
        layers = (layers,)
    try:
        names = tuple(layers)
    except TypeError:
        raise MethodError(f"layer_cam: layers must be module names, got {layers!r}") from None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise MethodError(f"layer_cam: layers must be one or more module names, got {layers!r}")
    if len(set(names)) != len(names):
        raise MethodError(f"layer_cam: layers {list(names)} repeat a name")
    return names


def _record(net, names: tuple[str, ...], xc: torch.Tensor):
    """One forward pass: (logits, {layer name: output}). A layer whose output does not depend on an
    earlier one (the first layer to run; each parallel branch's first) is made an autograd leaf, so
    nothing before it is differentiated; the others keep their graph to it (:func:`.cam.capture`)."""
    with contextlib.ExitStack() as stack:
        seen = {n: stack.enter_context(capture(module_named(net, n, "layer_cam"), n, None, net.tokens))
                for n in names}
        with torch.enable_grad():
            out = net.module(xc)
    missing = [n for n, s in seen.items() if not s]
    if missing:
        raise MethodError(f"layer_cam: layer {missing[0]!r} did not run in the forward pass")
    return out, {n: s[0] for n, s in seen.items()}


def layer_maps(net, x, targets, top_k, layers, max_batch=None):
    """LayerCAM maps of every layer before upsampling: (``{layer: [N, K, h_l, w_l]}``, logits, targets)."""
    names = _layer_names(net, layers)
    maps: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    tgts, logits = [], []
    for xc, tc in feature_chunks(x, targets, batch_limit(max_batch)):
        out, seen = _record(net, names, xc)
        t = resolve_targets(tc, out.detach(), top_k)
        scores = out.gather(1, t)
        acts = [seen[n] for n in names]
        per = {n: [] for n in names}
        k = t.shape[1]
        for j in range(k):
            grads = torch.autograd.grad(scores[:, j].sum(), acts, retain_graph=j < k - 1, allow_unused=True)
            for n, a, g in zip(names, acts, grads):
                if g is None:
                    raise MethodError(f"layer_cam: the logits do not depend on layer {n!r}")
                a, g = token_map(a.detach(), net.tokens), token_map(g, net.tokens)
                per[n].append((g.clamp(min=0) * a).sum(dim=1).clamp(min=0))
        for n in names:
            maps[n].append(torch.stack(per[n], 1))
        tgts.append(t)
        logits.append(out.detach())
    return {n: torch.cat(m) for n, m in maps.items()}, torch.cat(logits), torch.cat(tgts)


def fuse_layers(maps: list[torch.Tensor], fuse: str = "mean") -> torch.Tensor:
    """Fuse same-size non-negative maps ``[N, K, H, W]`` of several layers: each normalised by rule
    ``"peak"`` (:func:`wsloc.normalize.normalize_maps`: divided by its own maximum; a map that is zero
    everywhere stays zero), then the mean or the maximum over the layers; one map is returned unchanged."""
    check_fuse(fuse)
    if len(maps) == 1:
        return maps[0]
    stack = torch.stack([normalize_maps(m, "peak") for m in maps])
    return stack.mean(dim=0) if fuse == "mean" else stack.amax(dim=0)


@register("layer_cam")
def layer_cam(net, x, targets, top_k, need_attr, max_batch, *, layers=None, fuse="mean") -> SaliencyMaps:
    """LayerCAM (Jiang et al. 2021) at ``layers`` (default: ``Classifier.last_conv``), upsampled bilinearly.

    Options: layers: a module name or a list of them (e.g. ``["_blocks.10", "_relu_head"]`` on
    EfficientNet-Lite0: the last stride-16 block and the last feature map); fuse: how several
    layers' peak-normalised maps are combined, ``"mean"`` (default) or ``"max"``.
    Maps: float32 ``[N, K, H, W]``, non-negative.
    """
    check_fuse(fuse)  # before the passes
    net = describe(net, tuple(x.shape[-2:]))
    per_layer, logits, t = layer_maps(net, x, targets, top_k, layers, max_batch)
    maps = fuse_layers([upsample_maps(m, x.shape[-2:]) for m in per_layer.values()], fuse)
    return SaliencyMaps(maps=maps, targets=t, scores=logits.gather(1, t).float(), logits=logits,
                        attributions=None, method="layer_cam")
