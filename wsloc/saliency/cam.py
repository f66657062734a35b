"""Class activation maps: CAM, Grad-CAM and Guided Grad-CAM.

* CAM (Zhou et al. 2016), for a network ending in global average pooling and one linear
  layer: ``M_c = sum_k w_ck A_k`` with ``A`` the pooled feature maps and ``w`` the linear
  weights (bias excluded; no ReLU unless ``relu=True``), so that
  ``mean(M_c) + b_c = logit_c``.
* Grad-CAM (Selvaraju et al. 2017): ``M_c = ReLU(sum_k alpha_ck A_k)`` with
  ``alpha_ck = mean_ij d logit_c / d A_kij`` at a chosen layer (default: the model's last
  convolutional feature map, ``Classifier.last_conv``). On a GAP + linear model
  ``alpha_ck = w_ck / (h w)``, so Grad-CAM is ReLU(CAM) divided by ``h w``. There, at the
  pooled layer, :func:`grad_cam` skips the backward pass (``shortcut=True``, the default):
  it builds the gradient the backward pass would return (the linear weights spread over the
  ``h x w`` positions, divided by ``h w``) and reduces it with the same operations, which
  gives the backward pass's maps bit for bit on the CPU (``tests/test_cam_shortcut.py``).
* Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map.

Maps are upsampled bilinearly (``align_corners=False``) to the input size. The feature map
is read with a temporary forward hook on the layer, removed before returning. On a vision
transformer the layer outputs tokens; the patch tokens are laid out on the patch grid
(:func:`token_map`) and Grad-CAM runs on that map (the default layer is the input of the
last attention block, found by :func:`wsloc.models.layer_info`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import MethodError
from .core import (SaliencyMaps, batch_limit, check_reduce, describe, parse_targets, reduce_channels,
                   resolve_targets, upsample_maps)
from .methods import get_method, register


def module_named(net, name: str, what: str) -> nn.Module:
    """The submodule ``name`` of the model; MethodError naming it (``what``: the method) if there is none."""
    try:
        return net.module.get_submodule(name)
    except AttributeError:
        raise MethodError(f"{what}: the model has no module named {name!r}") from None


def token_map(t: torch.Tensor, tokens: tuple[int, int, int] | None) -> torch.Tensor:
    """A layer's output as a feature map ``[N, C, h, w]``.

    4-D outputs are returned as they are; a vision transformer's tokens ``[N, p + h*w, C]``
    (``tokens = (p, h, w)``, see :attr:`wsloc.models.Classifier.tokens`) lose their ``p``
    class/distillation tokens and the patch tokens, row by row, become the ``h x w`` grid.
    """
    if t.ndim == 4 or tokens is None:
        return t
    prefix, h, w = tokens
    return t[:, prefix:].transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


def _is_map(output, tokens) -> bool:
    if not isinstance(output, torch.Tensor):
        return False
    if output.ndim == 4:
        return True
    return tokens is not None and output.ndim == 3 and output.shape[1] == tokens[0] + tokens[1] * tokens[2]


@contextlib.contextmanager
def capture(module: nn.Module, name: str, make_leaf: bool | None, tokens: tuple[int, int, int] | None = None):
    """Record the output of ``module`` during one forward pass (a temporary forward hook).

    With ``make_leaf`` the output is replaced by a detached copy that requires grad, so that
    gradients can be taken with respect to it and nothing before it is recorded by autograd;
    ``None``: only when the output does not require grad already (when it does, it depends on
    an earlier captured leaf and keeps its graph to it: several layers in one pass).
    The output must be a feature map ``[N, C, h, w]``, or with ``tokens`` a vision
    transformer's tokens (see :func:`token_map`). Yields a list that receives the output(s).
    """
    seen: list[torch.Tensor] = []

    def hook(mod, inputs, output):
        if not _is_map(output, tokens):
            want = "[N, C, h, w]" + ("" if tokens is None else
                                     f" or tokens [N, {tokens[0] + tokens[1] * tokens[2]}, C]")
            raise MethodError(f"layer {name!r} must output a feature map {want}, got "
                              f"{tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__}")
        leaf = make_leaf if make_leaf is not None else not output.requires_grad
        if leaf:
            output = output.detach().requires_grad_(True)
        seen.append(output)
        return output if leaf else None

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()
    if len(seen) > 1:
        raise MethodError(f"layer {name!r} ran {len(seen)} times in one forward pass; choose a module "
                          f"that runs once")


def feature_chunks(x, targets, limit):
    """``(x[i:i + limit], targets of those images or None)`` for consecutive chunks of the batch."""
    n = x.shape[0]
    given = None if targets is None else parse_targets(targets, n)
    for i in range(0, n, limit):
        yield x[i:i + limit], None if given is None else given[i:i + limit]


@register("cam")
def cam(net, x, targets, top_k, need_attr, max_batch, *, relu=False) -> SaliencyMaps:
    """CAM (Zhou et al. 2016) for GAP + linear models; MethodError for other models.

    Options: relu: clip negative evidence (False, as published).
    """
    net = describe(net, tuple(x.shape[-2:]))
    if net.fc is None or net.last_conv is None:
        raise MethodError("cam needs a model ending in global average pooling followed by one linear "
                          "layer (Classifier.fc is None for this model); use grad_cam")
    fc = module_named(net, net.fc, "cam")
    if not isinstance(fc, nn.Linear):
        raise MethodError(f"cam: {net.fc!r} is a {type(fc).__name__}, not nn.Linear")
    layer = module_named(net, net.last_conv, "cam")
    maps, tgts, logits = [], [], []
    for xc, tc in feature_chunks(x, targets, batch_limit(max_batch)):
        with torch.no_grad(), capture(layer, net.last_conv, make_leaf=False, tokens=net.tokens) as seen:
            out = net.module(xc)
        t = resolve_targets(tc, out, top_k)
        a = token_map(seen[0], net.tokens)
        w = fc.weight[t]  # [n, K, C]
        m = torch.einsum("nkc,nchw->nkhw", w.to(a.dtype), a)
        maps.append(upsample_maps(m.clamp(min=0) if relu else m, x.shape[-2:]))
        tgts.append(t)
        logits.append(out)
    logits = torch.cat(logits)
    t = torch.cat(tgts)
    return SaliencyMaps(maps=torch.cat(maps), targets=t, scores=logits.gather(1, t).float(), logits=logits,
                        attributions=None, method="cam")


def pooled_linear(net, layer: str, size) -> nn.Linear | None:
    """The final ``nn.Linear`` when ``layer`` is the feature map that a GAP + linear model pools
    (``Classifier.fc`` set and ``layer == Classifier.last_conv``), else None.

    For such a layer ``d logit_c / d A_kij = w_ck / (h w)`` at every position, so Grad-CAM
    needs no backward pass (:func:`gap_linear_gradcam`).
    """
    net = describe(net, tuple(size))
    if net.fc is None or layer != net.last_conv or getattr(net, "tokens", None) is not None:
        return None
    try:
        fc = net.module.get_submodule(net.fc)
    except AttributeError:
        return None
    return fc if isinstance(fc, nn.Linear) else None


def forward_only_maps(net, method: str, options: dict) -> bool:
    """Whether ``method`` with ``options`` needs only the forward pass of the classifier ``net``:
    ``cam``, or ``grad_cam`` at the last feature layer with its ``shortcut`` on, of a model
    that ends in global average pooling and one linear layer (``Classifier.fc``; not a vision
    transformer's tokens). Such maps are read from the feature map and the linear weights."""
    if method not in ("cam", "grad_cam"):
        return False
    if method == "grad_cam" and (options.get("shortcut", True) is not True
                                 or options.get("layer") not in (None, net.last_conv)):
        return False
    return net.fc is not None and net.last_conv is not None and getattr(net, "tokens", None) is None


def gap_linear_gradcam(a: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of one class per image at a GAP + linear model's pooled feature map, without autograd.

    Builds the gradient that the backward pass of ``logit_c`` gives at the pooled map (the
    class's linear weights broadcast over the ``h x w`` positions, divided by ``h w``, as the
    mean's backward does) and reduces it exactly as :func:`layer_gradcam` reduces autograd's,
    so the two agree bit for bit on the CPU.

    Args:
        a: float ``[n, C, h, w]`` feature map.
        weights: ``[n, C]`` linear weights of each image's class.

    Returns:
        float ``[n, h, w]`` map before the ReLU.
    """
    h, w = a.shape[-2:]
    g = weights.to(a.dtype).reshape(*weights.shape, 1, 1).expand(*a.shape) / (h * w)
    alpha = g.mean(dim=(2, 3), keepdim=True)
    return (alpha * a).sum(dim=1)


def layer_gradcam(net, x, targets, top_k, layer, relu=True, max_batch=None, shortcut=True):
    """Grad-CAM maps at ``layer`` before upsampling: (``[N, K, h, w]``, logits, targets).

    ``shortcut``: on a GAP + linear model's pooled layer (:func:`pooled_linear`), compute the
    maps from the linear weights (one forward pass, no backward; the same maps).
    """
    module = module_named(net, layer, "grad_cam")
    fc = pooled_linear(net, layer, x.shape[-2:]) if shortcut else None
    maps, tgts, logits = [], [], []
    for xc, tc in feature_chunks(x, targets, batch_limit(max_batch)):
        if fc is not None:
            with torch.no_grad(), capture(module, layer, make_leaf=False) as seen:
                out = net.module(xc)
            if not seen:
                raise MethodError(f"grad_cam: layer {layer!r} did not run in the forward pass")
            a = seen[0]
            t = resolve_targets(tc, out, top_k)
            m = torch.stack([gap_linear_gradcam(a, fc.weight[t[:, j]]) for j in range(t.shape[1])], 1)
            maps.append(m.clamp(min=0) if relu else m)
            tgts.append(t)
            logits.append(out)
            continue
        with torch.enable_grad():
            with capture(module, layer, make_leaf=True, tokens=net.tokens) as seen:
                out = net.module(xc)
            if not seen:
                raise MethodError(f"grad_cam: layer {layer!r} did not run in the forward pass")
            a = seen[0]  # [n, C, h, w], or tokens [n, T, C] (reshaped by token_map)
            t = resolve_targets(tc, out, top_k)
            scores = out.gather(1, t)
            k = t.shape[1]
            fmap = token_map(a.detach(), net.tokens)
            m = []
            for j in range(k):
                (g,) = torch.autograd.grad(scores[:, j].sum(), a, retain_graph=j < k - 1, allow_unused=True)
                if g is None:
                    raise MethodError(f"grad_cam: the logits do not depend on layer {layer!r}")
                g = token_map(g, net.tokens)
                alpha = g.mean(dim=(2, 3), keepdim=True)
                m.append((alpha * fmap).sum(dim=1))
        m = torch.stack(m, 1)
        maps.append(m.clamp(min=0) if relu else m)
        tgts.append(t)
        logits.append(out.detach())
    return torch.cat(maps), torch.cat(logits), torch.cat(tgts)


def _layer_name(net, x, layer) -> str:
    describe(net, tuple(x.shape[-2:]))  # last_conv, and the token layout of a vision transformer
    if layer is None:
        layer = net.last_conv
        if layer is None:
            raise MethodError("grad_cam: the model has no spatial feature layer; pass layer='module.name'")
    if not isinstance(layer, str):
        raise MethodError(f"layer must be a module name (str), got {type(layer).__name__}")
    return layer


@register("grad_cam")
def grad_cam(net, x, targets, top_k, need_attr, max_batch, *, layer=None, relu=True,
             shortcut=True) -> SaliencyMaps:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer`` (default ``Classifier.last_conv``), upsampled bilinearly.

    Options: layer: qualified module name; relu: as published (True); shortcut: at a GAP +
    linear model's pooled layer, take the gradient from the linear weights instead of a
    backward pass (True; the same maps, see the module docstring; False forces the backward).
    """
    if not isinstance(shortcut, bool):
        raise MethodError(f"grad_cam: shortcut={shortcut!r}: expected True or False")
    layer = _layer_name(net, x, layer)
    m, logits, t = layer_gradcam(net, x, targets, top_k, layer, relu, max_batch, shortcut)
    return SaliencyMaps(maps=upsample_maps(m, x.shape[-2:]), targets=t, scores=logits.gather(1, t).float(),
                        logits=logits, attributions=None, method="grad_cam")


@register("guided_grad_cam")
def guided_grad_cam(net, x, targets, top_k, need_attr, max_batch, *, layer=None, reduce="max_abs",
                    engine="auto", base="guided_backprop", cam="grad_cam") -> SaliencyMaps:
    """Guided Grad-CAM: guided backpropagation times the bilinearly upsampled Grad-CAM map.

    The product of two registered methods: the attribution ``[N, K, C, H, W]`` of ``base``
    (a name or :class:`.methods.Method`; it gets ``engine`` when it takes one) times the map
    ``[N, K, H, W]`` of ``cam`` (it gets ``layer``, default ``Classifier.last_conv``) for the
    base's targets, reduced over channels by ``reduce``.
    Attributions: that product ``[N, K, C, H, W]``.
    """
    check_reduce(reduce)
    pixel_method, cam_method = get_method(base, "base"), get_method(cam, "cam")
    layer = _layer_name(net, x, layer)
    base_options = {"engine": engine} if "engine" in pixel_method.options() else {}
    if engine != "auto" and not base_options:
        raise MethodError(f"guided_grad_cam: engine={engine!r}, but base {pixel_method.name!r} takes no engine")
    pixel = pixel_method.compute(net, x, targets, top_k, True, max_batch, **base_options)
    if pixel.attributions is None:
        raise MethodError(f"guided_grad_cam: base {pixel_method.name!r} gives no attributions [N, K, C, H, W]")
    t = pixel.targets
    maps = cam_method.compute(net, x, t, top_k, False, max_batch, layer=layer).maps
    attr = pixel.attributions * maps.to(pixel.attributions.dtype).unsqueeze(2)
    return SaliencyMaps(maps=reduce_channels(attr, reduce), targets=t, scores=pixel.scores,
                        logits=pixel.logits, attributions=attr.float() if need_attr else None,
                        method="guided_grad_cam")
