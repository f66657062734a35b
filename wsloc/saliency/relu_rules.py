"""Backward rules for ReLU-family units under autograd (the fallback of :mod:`.tape`).

Guided backpropagation (Springenberg et al. 2015) and the deconvnet (Zeiler & Fergus 2014)
differ from the gradient only in how a ReLU passes the backward signal ``g``:

* gradient:  ``g * [x > 0]``
* guided:    ``max(g, 0) * [x > 0]``
* deconvnet: ``max(g, 0)`` (the forward mask is ignored)

ReLU6 (``min(max(x, 0), 6)``, Lite0's activation) passes ``g`` where ``0 < x < 6``; under the
guided rule ``max(g, 0)`` there, under the deconvnet rule ``max(g, 0)`` everywhere (the
deconvnet rectifies the backward signal; it does not re-apply the upper clip).

:class:`ReluRuleMode` is a ``TorchFunctionMode``: while it is active, every call of
``F.relu`` (``nn.ReLU``, also in place), ``torch.relu(_)``, ``Tensor.relu(_)``, ``F.relu6``
and ``F.hardtanh(_)`` with lower bound 0 (``nn.ReLU6``) on a tensor that requires grad goes
through an autograd function with the chosen backward. The model is not touched; the
mode ends with its ``with`` block. Forward values are those of the original call.
"""

from __future__ import annotations

import math

import torch
from torch.overrides import TorchFunctionMode

from .tape import RULES


class _RuledUnit(torch.autograd.Function):
    """``out = call(x)`` (the original op, possibly in place) with a rule-based backward."""

    @staticmethod
    def forward(ctx, x, call, lo, hi, rule, inplace):
        out = call(x)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(out)
        ctx.lo, ctx.hi, ctx.rule = lo, hi, rule
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        if ctx.rule == "deconvnet":
            return g.clamp(min=0), None, None, None, None, None
        if ctx.rule == "guided":
            g = g.clamp(min=0)
        mask = out > ctx.lo
        if ctx.hi != math.inf:
            mask &= out < ctx.hi
        return g * mask, None, None, None, None, None


class ReluRuleMode(TorchFunctionMode):
    """Apply ``rule`` (one of :data:`RULES`) to ReLU-family calls; counts them in ``units``."""

    def __init__(self, rule: str):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.rule = rule
        self.units = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        bounds = None
        if name in ("relu", "relu_"):
            bounds = (0.0, math.inf)
        elif name == "relu6":
            bounds = (0.0, 6.0)
        elif name in ("hardtanh", "hardtanh_"):
            lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
            hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
            if lo == 0:
                bounds = (0.0, float(hi))
        x = args[0] if args else kwargs.get("input")
        if bounds is None or not isinstance(x, torch.Tensor) or not x.requires_grad:
            return func(*args, **kwargs)
        inplace = name.endswith("_") or bool(kwargs.get("inplace", False)) or (
            name == "hardtanh" and len(args) > 3 and bool(args[3])) or (
            name in ("relu", "relu6") and len(args) > 1 and bool(args[1]))
        rest, kw = args[1:], kwargs
        self.units += 1
        return _RuledUnit.apply(x, lambda t: func(t, *rest, **kw), bounds[0], bounds[1], self.rule, inplace)
