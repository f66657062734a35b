"""Class model visualisation (Simonyan, Vedaldi & Zisserman 2014, section 2).

Find an input image ``I`` that maximises the class score (the logit, before the softmax)
regularised by its L2 norm::

    I* = argmax_I  S_c(I) - lambda * ||I||_2^2

by gradient ascent from the zero image. ``I`` lives in the network's input space, which is
zero-centred (the normalised input), so the zero image is the mean image and the L2 term
pulls towards it, as in the paper. Each step (``t = 0 .. steps - 1``)::

    g = d/dI [S_c(jitter(I)) - lambda * ||I||^2]          (back-propagation)
    g = g / rms(g)                                        (if normalize_grad)
    I = I + step_size * g
    I = clip(I)                                           (if clip: keep a valid image)
    I = gaussian_blur(I, blur_sigma)                      (every blur_every steps, if blur_sigma > 0)

The options after the paper's plain ascent come from later work: random jitter of the image
by up to ``jitter`` pixels before each forward pass (Mordvintsev et al. 2015, "Inceptionism"),
Gaussian blur every few steps and clipping to the valid pixel range (Yosinski et al. 2015,
"Understanding neural networks through deep visualization"); gradient normalisation (an
adaptive step size, still an ascent direction) makes ``step_size`` independent of the model's
gradient scale. Setting ``normalize_grad=False, jitter=0, blur_sigma=0, clip=False`` is
exactly the paper's method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .errors import MethodError


@dataclass
class ClassVisualization:
    """The result for one class.

    Attributes:
        class_index: the class maximised.
        x: float32 ``[3, H, W]`` the optimised input (network space, CPU).
        image: uint8 ``[H, W, 3]`` RGB picture of ``x`` (see :func:`to_picture`).
        zero_score: class score of the zero image.
        score: class score of the final image.
        history: class score seen at each step, before its update (``steps`` floats).
    """

    class_index: int
    x: torch.Tensor
    image: np.ndarray
    zero_score: float
    score: float
    history: list[float] = field(default_factory=list)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` (kernel radius ``ceil(3 sigma)``, reflect padding)."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="reflect")
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def to_picture(x: torch.Tensor, mean=None, std=None, stretch: bool = True) -> np.ndarray:
    """Network input ``[3, H, W]`` -> uint8 ``[H, W, 3]``.

    Undoes the normalisation when ``mean``/``std`` are given (values then in [0, 1] for a valid
    image; otherwise ``x`` is shown as ``0.5 + x / 2``). With ``stretch`` the deviation from the
    zero image (mid gray for normalised inputs) is scaled so that its 99.5th percentile of
    absolute values reaches the full range: the faint patterns become visible, the zero image
    stays gray.
    """
    x = x.detach().float().cpu()
    if mean is not None and std is not None:
        v = x * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
        centre = torch.tensor(mean).view(3, 1, 1)
    else:
        v, centre = 0.5 + x / 2, torch.full((3, 1, 1), 0.5)
    if stretch:
        d = v - centre
        peak = float(torch.quantile(d.abs().flatten(), 0.995)) if d.numel() else 0.0
        v = 0.5 + d * (0.5 / peak) if peak > 0 else torch.full_like(v, 0.5)
    return (v.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _check_request(model, classes, input_size, steps, step_size, l2, jitter, blur_sigma, blur_every):
    """(network, class list, input size) of a :func:`visualize_class` call; MethodError on a bad argument."""
    net = model.model if hasattr(model, "model") and isinstance(model.model, nn.Module) else model
    single = isinstance(classes, (int, np.integer))
    cls = [int(classes)] if single else [int(c) for c in classes]
    if not cls:
        raise MethodError("visualize_class: no classes given")
    size = input_size or getattr(model, "input_size", None)
    if size is None:
        raise MethodError("visualize_class: input_size is needed for a plain nn.Module")
    if steps < 0 or step_size <= 0 or l2 < 0 or jitter < 0 or blur_sigma < 0 or blur_every < 1:
        raise MethodError("visualize_class: need steps >= 0, step_size > 0, l2 >= 0, jitter >= 0, "
                          "blur_sigma >= 0, blur_every >= 1")
    return net, cls, size


def _ascend(scores, x, steps, step_size, l2, normalize_grad, jitter, blur_sigma, blur_every, bounds, gen,
            progress):
    """Gradient ascent on ``scores(x).sum() - l2 * ||x||^2`` from ``x`` ``[N, 3, H, W]``.

    ``scores`` maps inputs to the ``[N]`` class scores; ``bounds`` is (lo, hi) per channel or
    (None, None). Returns (the final input, detached, and the scores before every step:
    ``steps`` lists of N floats).
    """
    lo, hi = bounds
    history: list[list[float]] = []
    for t in tqdm(range(steps), desc="visualize-class", unit="step", disable=not progress, leave=False):
        x.requires_grad_(True)
        xin = x
        if jitter:
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
            xin = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        score = scores(xin)
        objective = score.sum() - l2 * (x * x).sum()
        (g,) = torch.autograd.grad(objective, x)
        with torch.no_grad():
            if normalize_grad:
                g = g / g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
            x = x.detach() + step_size * g
            if lo is not None:
                x = torch.maximum(torch.minimum(x, hi), lo)
            if blur_sigma > 0 and (t + 1) % blur_every == 0:
                x = gaussian_blur(x, blur_sigma)
            history.append(score.detach().float().cpu().tolist())
    return x.detach(), history


def visualize_class(model, classes, steps: int = 200, step_size: float = 0.05, l2: float = 1e-3,
                    normalize_grad: bool = True, jitter: int = 0, blur_sigma: float = 0.0,
                    blur_every: int = 4, clip: bool = True, input_size: tuple[int, int] | None = None,
                    seed: int = 0, stretch: bool = True, progress: bool = False) -> list[ClassVisualization]:
    """Class model visualisation of one or several classes (optimised together as a batch).

    Args:
        model: a ``Classifier`` (its input size and normalisation are used) or an ``nn.Module``
            mapping ``[N, 3, H, W]`` -> ``[N, C]`` logits (then ``input_size`` is required and
            ``clip`` is ignored: the valid range is unknown).
        classes: an int or a list of class indices.
        steps: number of ascent steps (>= 0).
        step_size: ascent step ``eta``; with ``normalize_grad`` the RMS change per input value.
        l2: the regularisation weight ``lambda`` (>= 0).
        normalize_grad: divide the gradient by its RMS (per image) before stepping.
        jitter: random shift of up to this many pixels (circular roll) before each forward pass.
        blur_sigma, blur_every: Gaussian blur of ``I`` every ``blur_every`` steps (off when 0).
        clip: keep ``I`` a valid image: the de-normalised values within [0, 1].
        input_size: (H, W) of ``I``; defaults to the classifier's.
        seed: seeds the jitter (the ascent is otherwise deterministic).
        stretch: contrast stretch of the returned pictures (see :func:`to_picture`).
        progress: show a tqdm progress bar of the steps (rate and ETA) on stderr.

    Returns:
        one :class:`ClassVisualization` per class, in order.
    """
    net, cls, size = _check_request(model, classes, input_size, steps, step_size, l2, jitter, blur_sigma,
                                    blur_every)
    pre = getattr(model, "preprocess", None)
    mean = getattr(pre, "mean", None)
    std = getattr(pre, "std", None)
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    n_classes = getattr(model, "num_classes", None)
    for c in cls:
        if c < 0 or (n_classes is not None and c >= n_classes):
            raise MethodError(f"visualize_class: class {c} is out of range 0..{(n_classes or 1) - 1}")
    idx = torch.tensor(cls, device=device)
    rows = torch.arange(len(cls), device=device)
    lo = hi = None
    if clip and mean is not None and std is not None:
        m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        s = torch.tensor(std, device=device).view(1, 3, 1, 1)
        lo, hi = (0 - m) / s, (1 - m) / s
    gen = torch.Generator().manual_seed(seed)
    was_training = net.training
    net.eval()
    x = torch.zeros(len(cls), 3, *size, device=device)
    try:
        with torch.no_grad():
            zero = net(x)[rows, idx].float().cpu()
        x, history = _ascend(lambda v: net(v)[rows, idx], x, steps, step_size, l2, normalize_grad, jitter,
                             blur_sigma, blur_every, (lo, hi), gen, progress)
        with torch.no_grad():
            final = net(x)[rows, idx].float().cpu()
    finally:
        net.train(was_training)
    out = []
    for i, c in enumerate(cls):
        xi = x[i].float().cpu()
        out.append(ClassVisualization(c, xi, to_picture(xi, mean, std, stretch), float(zero[i]), float(final[i]),
                                      [h[i] for h in history]))
    return out
