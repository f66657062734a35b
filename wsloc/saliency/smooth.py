"""SmoothGrad (Smilkov et al. 2017) and VarGrad (Adebayo et al. 2018) over any base method.

For ``n_samples`` noisy copies ``x + e_s``, ``e_s ~ N(0, (sigma * (max(x) - min(x)))^2)``
per image (sigma as a fraction of the image's value range; the paper's default 0.15 and
50 samples), the base method's maps ``M_s`` are computed for the targets of the clean image.
SmoothGrad returns their mean, VarGrad their variance (population, ``1/n``); the same for
the signed attributions when asked for. Targets, scores and logits are those of the
unperturbed input.

The noise is drawn on the CPU from ``generator`` (default: a fresh one seeded with ``seed``),
sample after sample, each an ``[N, C, H, W]`` draw, so the maps do not depend on
``max_batch``. A fixed ``noise`` tensor ``[n_samples, N or 1, C, H, W]`` (absolute values,
added as is) replaces the draws.
"""

from __future__ import annotations

import torch

from ..errors import MethodError
from .core import SaliencyMaps, batch_limit, forward_logits, resolve_targets, row_batches
from .methods import METHODS, Method, get_method, register

#: The noise tunnels defined here; neither can be the base of the other (or of itself).
NOISE_TUNNELS = ("smoothgrad", "vargrad")


def _noise(x, n_samples, sigma, seed, generator, noise):
    """Iterator of ``[N, C, H, W]`` noise tensors (on x's device) and their count."""
    if noise is not None:
        if not isinstance(noise, torch.Tensor) or noise.ndim != 5 or noise.shape[2:] != x.shape[1:] \
                or noise.shape[1] not in (1, x.shape[0]):
            raise MethodError(f"noise must be a tensor [n_samples, N or 1, C, H, W] for inputs "
                              f"{tuple(x.shape)}, got {getattr(noise, 'shape', type(noise).__name__)}")
        e = noise.to(device=x.device, dtype=x.dtype)
        return (e[s].expand_as(x) for s in range(e.shape[0])), e.shape[0]
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise MethodError(f"n_samples must be a positive int, got {n_samples!r}")
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or sigma < 0:
        raise MethodError(f"sigma must be a non-negative number (fraction of the value range), got {sigma!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed))
    flat = x.flatten(1)
    scale = (sigma * (flat.amax(1) - flat.amin(1))).view(-1, 1, 1, 1)

    def draws():
        for _ in range(n_samples):
            e = torch.randn(tuple(x.shape), generator=generator, dtype=torch.float32)
            yield e.to(device=x.device, dtype=x.dtype) * scale
    return draws(), n_samples


def _base_method(name: str, base) -> Method:
    """The base of a noise tunnel: any registered method (or :class:`Method`) but a noise tunnel."""
    known = ", ".join(m for m in METHODS if m not in NOISE_TUNNELS)
    try:
        method = get_method(base)
    except MethodError:
        raise MethodError(f"{name}: base must be one of {known}; got {base!r}") from None
    if method.name in NOISE_TUNNELS:
        raise MethodError(f"{name}: base must be one of {known}; got {base!r}")
    return method


def _noise_tunnel(name, net, x, targets, top_k, need_attr, max_batch, n_samples, sigma, base, seed,
                  generator, noise, base_options) -> SaliencyMaps:
    method = _base_method(name, base)
    method.check_options(base_options, f"{name} (base {method.name})")
    limit = batch_limit(max_batch)
    logits = forward_logits(net, x, max_batch)
    t = resolve_targets(targets, logits, top_k)
    n, k = t.shape
    draws, count = _noise(x, n_samples, sigma, seed, generator, noise)
    rows = min(n, limit) if method.expands else limit
    acc = {}

    def add(key, value, idx):
        v = value.double()
        if key not in acc:
            acc[key] = [torch.zeros((n,) + tuple(v.shape[1:]), dtype=torch.float64, device=x.device)
                        for _ in range(2)]
        acc[key][0].index_add_(0, idx, v)
        acc[key][1].index_add_(0, idx, v * v)

    index = torch.arange(n, device=x.device)
    pieces = ((index, x + e) for e in draws)
    for idx, noisy in row_batches(pieces, rows):
        r = method.compute(net, noisy, t[idx], top_k, need_attr, max_batch, **base_options)
        add("maps", r.maps, idx)
        if need_attr and r.attributions is not None:
            add("attributions", r.attributions, idx)

    def stat(key):
        if key not in acc:
            return None
        s, ss = acc[key]
        mean = s / count
        if name == "smoothgrad":
            return mean.float()
        return (ss / count - mean * mean).clamp(min=0).float()

    return SaliencyMaps(maps=stat("maps"), targets=t, scores=logits.gather(1, t).float(), logits=logits,
                        attributions=stat("attributions") if need_attr else None, method=name)


@register("smoothgrad")
def smoothgrad(net, x, targets, top_k, need_attr, max_batch, *, n_samples=50, sigma=0.15, base="gradient",
               seed=0, generator=None, noise=None, **base_options) -> SaliencyMaps:
    """SmoothGrad: the mean of the base method's maps over noisy copies of the input.

    Options:
        n_samples: noisy copies (50). sigma: noise standard deviation as a fraction of each
        image's value range ``max - min`` (0.15). base: any other method, by name or
        :class:`.methods.Method` ("gradient"). seed / generator: where the noise comes from.
        noise: fixed absolute noise ``[n_samples, N or 1, C, H, W]``. Other keywords go to
        the base method.
    """
    return _noise_tunnel("smoothgrad", net, x, targets, top_k, need_attr, max_batch, n_samples, sigma, base,
                         seed, generator, noise, base_options)


@register("vargrad")
def vargrad(net, x, targets, top_k, need_attr, max_batch, *, n_samples=50, sigma=0.15, base="gradient",
            seed=0, generator=None, noise=None, **base_options) -> SaliencyMaps:
    """VarGrad: the variance of the base method's maps over noisy copies (options as :func:`smoothgrad`)."""
    return _noise_tunnel("vargrad", net, x, targets, top_k, need_attr, max_batch, n_samples, sigma, base,
                         seed, generator, noise, base_options)
