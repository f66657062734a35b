"""Gradient maps: the input gradient of K target logits per image, computed together.

``input_gradients`` is the engine behind every gradient-based method. It runs one forward
pass per batch of images and gets the gradients of all K target classes from it:

* ``engine="tape"``: the :mod:`.tape` records the piecewise-linear forward pass (no autograd
  graph) and transposes it once for all K classes (a ``[K*N]`` batched backward, BN folded
  into the convolutions, channels-last on the CPU);
* ``engine="autograd"``: one forward pass with autograd, then K backward passes reusing its
  graph (``retain_graph``), gradients with respect to the input only (the parameters'
  ``requires_grad`` flags are left as they are and no weight gradient is asked for);
* ``engine="auto"`` (default): the tape, falling back to autograd for a model with an op
  the tape cannot transpose (remembered per model).

Methods:

* ``gradient`` (Simonyan et al. 2014): ``max_c |d score / d x_c|`` where score is the
  pre-softmax logit of the target class;
* ``gradient_x_input`` (Shrikumar et al. 2016): ``x * d score / d x``;
* ``guided_backprop`` (Springenberg et al. 2015) and ``deconvnet`` (Zeiler & Fergus 2014):
  the gradient with their ReLU backward rules (see :mod:`.relu_rules`).
"""

from __future__ import annotations

import weakref

import torch

from ..errors import MethodError
from .core import (Net, SaliencyMaps, batch_limit, check_reduce, parse_targets, reduce_channels,
                   resolve_targets)
from .methods import register
from .relu_rules import ReluRuleMode
from .tape import RULES, TapeUnsupported, one_hot_grads, record

ENGINES = ("auto", "tape", "autograd")

# Models the tape could not handle: module -> reason (so "auto" does not retry every call).
_NO_TAPE: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def tape_unsupported_reason(module: torch.nn.Module) -> str | None:
    """Why the tape engine is not used for ``module`` (None if it is, or was never tried)."""
    return _NO_TAPE.get(module)


def check_engine(engine: str) -> str:
    """``engine`` validated: one of :data:`ENGINES`, else MethodError."""
    if engine not in ENGINES:
        raise MethodError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    return engine


def input_gradients(net: Net, x: torch.Tensor, targets, top_k: int, rule: str = "gradient",
                    max_batch: int | None = None, engine: str = "auto"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input gradients of K target logits per image.

    Args:
        net: the network (see :func:`.core.as_net`); must be in eval mode already.
        x: float ``[N, C, H, W]`` on the network's device.
        targets: None (top-k of the forward pass), int, ``[N]`` or ``[N, K]``.
        top_k: K when ``targets`` is None.
        rule: ReLU backward rule, one of :data:`.tape.RULES`.
        max_batch: most images per forward pass, and most image-class pairs per backward pass.
        engine: "auto", "tape" or "autograd".

    Returns:
        (grads float ``[N, K, C, H, W]`` (the input dtype), logits ``[N, Cl]``, targets int64 ``[N, K]``).
    """
    if rule not in RULES:
        raise MethodError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    check_engine(engine)
    limit = batch_limit(max_batch)
    n = x.shape[0]
    given = None if targets is None else parse_targets(targets, n)
    grads, logits, tgts = [], [], []
    for i in range(0, n, limit):
        t = None if given is None else given[i:i + limit]
        g, out, t = _chunk(net, x[i:i + limit], t, top_k, rule, limit, engine)
        grads.append(g)
        logits.append(out)
        tgts.append(t)
    return torch.cat(grads), torch.cat(logits), torch.cat(tgts)


def _chunk(net, x, targets, top_k, rule, limit, engine):
    if engine != "autograd" and (engine == "tape" or net.module not in _NO_TAPE):
        try:
            return _tape_chunk(net, x, targets, top_k, rule, limit)
        except TapeUnsupported as exc:
            if engine == "tape":
                raise MethodError(f"engine='tape' cannot run this model: {exc}") from None
            _NO_TAPE[net.module] = str(exc)
    return _autograd_chunk(net, x, targets, top_k, rule)


def _tape_chunk(net, x, targets, top_k, rule, limit):
    tape, logits, _ = record(net.module, x)
    t = resolve_targets(targets, logits, top_k)
    if rule != "gradient" and tape.relu_units == 0:
        raise MethodError(f"the {rule} rule needs ReLU units (nn.ReLU, nn.ReLU6, F.relu, ...); "
                          f"none were reached in the forward pass")
    n, k = t.shape
    per_pass = max(1, limit // n)  # classes per backward pass
    grads = torch.empty((n, k) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    for k0 in range(0, k, per_pass):
        tk = t[:, k0:k0 + per_pass]
        g = tape.backward(logits, one_hot_grads(tk, logits.shape[1], logits.dtype), rule)
        grads[:, k0:k0 + tk.shape[1]] = g.view(tk.shape[1], n, *x.shape[1:]).transpose(0, 1)
    return grads, logits, t


def _autograd_chunk(net, x, targets, top_k, rule):
    xg = x.detach().clone().requires_grad_(True)
    mode = ReluRuleMode(rule) if rule != "gradient" else None
    with torch.enable_grad():
        if mode is not None:
            with mode:
                logits = net.module(xg)
            if mode.units == 0:
                raise MethodError(f"the {rule} rule needs ReLU units (nn.ReLU, nn.ReLU6, F.relu, ...); "
                                  f"none were reached in the forward pass")
        else:
            logits = net.module(xg)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise MethodError("the model must return logits [N, classes]")
        t = resolve_targets(targets, logits, top_k)
        scores = logits.gather(1, t)
        k = t.shape[1]
        grads = torch.empty((x.shape[0], k) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
        for j in range(k):
            # images are independent (eval mode): the sum's gradient is each image's own
            (g,) = torch.autograd.grad(scores[:, j].sum(), xg, retain_graph=j < k - 1)
            grads[:, j] = g
    return grads, logits.detach(), t


# -- methods ---------------------------------------------------------------------------------

def input_gradient_maps(name, net, x, targets, top_k, need_attr, max_batch, reduce, engine,
                        rule="gradient", times_input=False) -> SaliencyMaps:
    """The maps of the gradient family: the input gradient under a ReLU ``rule`` (:data:`.tape.RULES`),
    times the input when ``times_input``, reduced over channels by ``reduce``.

    Args: as a method hook (see :mod:`.methods`); ``name`` is the method recorded in the result.

    Returns:
        :class:`SaliencyMaps`: maps float32 ``[N, K, H, W]``; attributions float32
        ``[N, K, C, H, W]`` (the signed gradient, or gradient times input) when ``need_attr``.
    """
    check_reduce(reduce)
    grads, logits, t = input_gradients(net, x, targets, top_k, rule, max_batch, engine)
    attr = grads * x.unsqueeze(1) if times_input else grads
    return SaliencyMaps(maps=reduce_channels(attr, reduce), targets=t,
                        scores=logits.gather(1, t).float(), logits=logits,
                        attributions=attr.float() if need_attr else None, method=name)


@register("gradient")
def gradient(net, x, targets, top_k, need_attr, max_batch, *, reduce="max_abs", engine="auto") -> SaliencyMaps:
    """Simonyan et al. (2014): ``max over colour channels of |d logit_c / d x|``.

    Args: see :func:`wsloc.saliency.attribute`; ``reduce`` is the channel reduction
    (:data:`.core.REDUCTIONS`), ``engine`` "auto" | "tape" | "autograd".
    Attributions: the signed gradient ``[N, K, C, H, W]``.
    """
    return input_gradient_maps("gradient", net, x, targets, top_k, need_attr, max_batch, reduce, engine)


@register("gradient_x_input")
def gradient_x_input(net, x, targets, top_k, need_attr, max_batch, *, reduce="max_abs",
                     engine="auto") -> SaliencyMaps:
    """Gradient times input (Shrikumar et al. 2016): attribution ``x * d logit_c / d x``, reduced over channels."""
    return input_gradient_maps("gradient_x_input", net, x, targets, top_k, need_attr, max_batch, reduce, engine,
                               times_input=True)


@register("guided_backprop")
def guided_backprop(net, x, targets, top_k, need_attr, max_batch, *, reduce="max_abs",
                    engine="auto") -> SaliencyMaps:
    """Guided backpropagation (Springenberg et al. 2015): ReLUs pass only positive gradient, where active.

    Covers ``nn.ReLU``, ``nn.ReLU6``, in-place ReLUs and ``F.relu``/``F.relu6``/``torch.relu``
    calls; MethodError if the model has none.
    """
    return input_gradient_maps("guided_backprop", net, x, targets, top_k, need_attr, max_batch, reduce, engine,
                               rule="guided")


@register("deconvnet")
def deconvnet(net, x, targets, top_k, need_attr, max_batch, *, reduce="max_abs", engine="auto") -> SaliencyMaps:
    """Deconvnet (Zeiler & Fergus 2014): ReLUs pass the rectified backward signal, ignoring the forward mask."""
    return input_gradient_maps("deconvnet", net, x, targets, top_k, need_attr, max_batch, reduce, engine,
                               rule="deconvnet")
