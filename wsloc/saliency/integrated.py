"""Integrated gradients (Sundararajan, Taly & Yan 2017).

``IG_i(x) = (x_i - b_i) * integral_0^1 d score(b + a (x - b)) / d x_i da`` for a baseline
image ``b``, approximated by a quadrature rule with ``steps`` points. Completeness: the
attributions sum to ``score(x) - score(b)`` up to the quadrature error (for a piecewise
linear network the integrand is piecewise constant in ``a``, so the error falls as the
number of steps grows).

All ``N * steps`` interpolated images (rows) go through the network ``max_batch`` at a time,
each batch with one forward pass and a batched backward for the K classes.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MethodError
from .core import (SaliencyMaps, batch_limit, check_reduce, forward_logits, reduce_channels, resolve_targets,
                   row_batches)
from .gradients import check_engine, input_gradients
from .methods import register

IG_RULES = ("trapezoid", "left", "right", "middle", "gausslegendre")


def quadrature(steps: int, rule: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
    """Points ``a`` in [0, 1] and weights (summing to 1) of a rule with ``steps`` points.

    trapezoid: ``a_j = j / (steps - 1)``, weights ``1 / (steps - 1)`` halved at both ends;
    left / right / middle: Riemann sums on ``steps`` equal intervals (left ends, right ends,
    midpoints), weights ``1 / steps``; gausslegendre: Gauss-Legendre nodes mapped to [0, 1].
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MethodError(f"steps must be a positive int, got {steps!r}")
    if rule == "trapezoid":
        if steps < 2:
            raise MethodError("the trapezoid rule needs steps >= 2")
        a = np.linspace(0.0, 1.0, steps)
        w = np.full(steps, 1.0 / (steps - 1))
        w[0] = w[-1] = 0.5 / (steps - 1)
    elif rule == "left":
        a, w = np.arange(steps) / steps, np.full(steps, 1.0 / steps)
    elif rule == "right":
        a, w = np.arange(1, steps + 1) / steps, np.full(steps, 1.0 / steps)
    elif rule == "middle":
        a, w = (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    elif rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        a, w = (nodes + 1.0) / 2.0, weights / 2.0
    else:
        raise MethodError(f"rule must be one of {', '.join(IG_RULES)}; got {rule!r}")
    return a, w


def baseline_batch(baseline, x: torch.Tensor, name: str = "baseline") -> torch.Tensor:
    """A scalar or a tensor broadcastable to ``x`` [N, C, H, W] -> tensor of ``x``'s shape."""
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise MethodError(f"{name} must be a number or a tensor [C, H, W] / [N, C, H, W], "
                          f"got {type(baseline).__name__}")
    try:
        return baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
    except RuntimeError:
        raise MethodError(f"{name} of shape {tuple(baseline.shape)} does not broadcast to the "
                          f"input {tuple(x.shape)}") from None


@register("integrated_gradients", expands=True)
def integrated_gradients(net, x, targets, top_k, need_attr, max_batch, *, baseline=0.0, steps=64,
                         rule="trapezoid", reduce="max_abs", engine="auto") -> SaliencyMaps:
    """Integrated gradients along the straight path from ``baseline`` to ``x``.

    Options:
        baseline: a number (every input value; 0 is the mean colour of a normalised input)
            or a tensor broadcastable to ``[N, C, H, W]``.
        steps: quadrature points; rule: one of :data:`IG_RULES` (see :func:`quadrature`).
        reduce: channel reduction of the map; engine: "auto" | "tape" | "autograd".
    Attributions: ``(x - baseline) * averaged gradient`` ``[N, K, C, H, W]`` (they sum to about
    ``score(x) - score(baseline)``).
    """
    check_reduce(reduce)
    check_engine(engine)
    limit = batch_limit(max_batch)
    alphas, weights = quadrature(steps, rule)
    base = baseline_batch(baseline, x)
    logits = forward_logits(net, x, max_batch)
    t = resolve_targets(targets, logits, top_k)
    n, k = t.shape
    a = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
    w = torch.as_tensor(weights, dtype=torch.float64, device=x.device)
    total = torch.zeros((n, k) + tuple(x.shape[1:]), dtype=torch.float64, device=x.device)

    def pieces():
        for i in range(n):
            for j0 in range(0, steps, limit):
                aj = a[j0:j0 + limit].view(-1, 1, 1, 1)
                rows = base[i] + aj * (x[i] - base[i])
                yield (torch.full((len(aj),), i, dtype=torch.long, device=x.device),
                       torch.arange(j0, j0 + len(aj), device=x.device), rows)

    for idx, step, rows in row_batches(pieces(), limit):
        g, _, _ = input_gradients(net, rows, t[idx], top_k, "gradient", limit, engine)
        total.index_add_(0, idx, g.double() * w[step].view(-1, 1, 1, 1, 1))
    attr = ((x - base).double().unsqueeze(1) * total).to(x.dtype)
    return SaliencyMaps(maps=reduce_channels(attr, reduce), targets=t, scores=logits.gather(1, t).float(),
                        logits=logits, attributions=attr.float() if need_attr else None,
                        method="integrated_gradients")
