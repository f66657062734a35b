"""The classifier as the forward-only maps run it: BatchNorm folded, activations in place.

CAM, and Grad-CAM at a GAP + linear model's last feature map (the default preset on Lite0),
need only the network's forward pass (:func:`wsloc.saliency.cam.forward_only_maps`). For them
the localizer runs :func:`inference_copy` of the model: each eval-mode BatchNorm folded into
the convolution before it (:func:`fold_batchnorm`: the same function up to float rounding) and
every ReLU / ReLU6 computing in place (:func:`inplace_activations`: bit for bit the same
values). On Lite0 at 448 px on one CPU thread this halves the time of a forward pass
(BENCHMARKS.md, "Speed at the machine's limit"): at that size the network is memory-bound,
and the two steps take away two of the three full passes over each expanded activation.
Neither is applied to a network that a backward pass will run through.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["fold_batchnorm", "inference_copy", "inplace_activations"]


def fold_batchnorm(model: torch.nn.Module, input_size, device=None, tolerance: float = 1e-3):
    """A copy of ``model`` with each eval-mode ``BatchNorm2d`` folded into the ``Conv2d`` feeding it.

    Eval-mode BN is the per-channel affine map ``y = (x - mean) / sqrt(var + eps) * w + b``,
    so ``conv -> BN`` equals one convolution with weights ``W * s`` and bias
    ``(bias - mean) * s + b`` where ``s = w / sqrt(var + eps)``. Pairs are found by one probing
    forward pass (a BN whose input is the very tensor the previous convolution returned,
    each module called once); the folded BN becomes ``nn.Identity`` so module names (hooks of
    Grad-CAM, guided backprop) stay valid. The copy's logits are compared with the original's
    on the probe batch; if they differ by more than ``tolerance`` (relative to their scale)
    the original is returned unchanged.

    Returns:
        (model, number of BN layers folded); the model is ``model`` itself when none was.
    """
    if model.training:
        return model, 0
    param = next(model.parameters(), None)
    device = param.device if device is None and param is not None else (device or torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(2, 3, *input_size, generator=gen).to(device)
    folded = copy.deepcopy(model)
    calls: list = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: calls.append((mod, inp[0] if inp else None, out)))
             for m in folded.modules() if type(m) in (nn.BatchNorm2d,) or isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            reference = model(probe)
            folded(probe)
    finally:
        for h in hooks:
            h.remove()
    count: dict = {}
    for mod, _, _ in calls:
        count[mod] = count.get(mod, 0) + 1
    names = {m: n for n, m in folded.named_modules()}
    n = 0
    for (conv, _, conv_out), (bn, bn_in, _) in zip(calls, calls[1:]):
        if not (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn_in is conv_out
                and count[conv] == 1 and count[bn] == 1 and bn.track_running_stats
                and bn.running_mean is not None and conv.out_channels == bn.num_features):
            continue
        with torch.no_grad():
            scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = (bias - bn.running_mean) * scale + shift
            conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.ndim - 1))))
            conv.bias = nn.Parameter(new_bias.detach().clone(), requires_grad=False)
        parent, _, attr = names[bn].rpartition(".")
        setattr(folded.get_submodule(parent) if parent else folded, attr, nn.Identity())
        n += 1
    if n == 0:
        return model, 0
    with torch.no_grad():
        out = folded(probe)
    if not torch.allclose(out, reference, rtol=tolerance, atol=tolerance * float(reference.abs().max()) + 1e-6):
        return model, 0
    return folded, n


def inplace_activations(model: nn.Module) -> int:
    """Set ``inplace=True`` on every ``nn.ReLU`` / ``nn.ReLU6`` of ``model`` (in place); the
    number changed. Only for a model that no backward pass and no hook on the activation's
    input reads (an in-place activation overwrites its input)."""
    n = 0
    for m in model.modules():
        if type(m) in (nn.ReLU, nn.ReLU6) and not m.inplace:
            m.inplace = True
            n += 1
    return n


def inference_copy(model: nn.Module, input_size, device=None) -> tuple[nn.Module, int]:
    """A copy of an eval-mode ``model`` for forward passes only: BatchNorm folded
    (:func:`fold_batchnorm`, checked on a probe batch) and activations in place.

    Returns:
        (the copy, number of BN layers folded); ``model`` itself, unchanged, when it is in
        training mode.
    """
    if model.training:
        return model, 0
    folded, n = fold_batchnorm(model, input_size, device)
    if folded is model:
        folded = copy.deepcopy(model)
    inplace_activations(folded)
    return folded, n
