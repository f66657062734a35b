"""Occlusion (Zeiler & Fergus 2014): how much a target logit drops when a patch is covered.

A ``patch`` window filled with ``fill`` (in the network's input space: 0 is the mean colour
of a normalised input) slides over the image with step ``stride``; a final window flush
with the bottom / right edge is added when the steps do not reach it, so every pixel is
covered. The attribution of a pixel is the mean, over the windows covering it, of
``score(x) - score(x with the window filled)`` (the same value in every channel; a window
covers all channels). Positive: covering the pixel lowers the logit.

The ``N * windows`` occluded images go through the network ``max_batch`` at a time
(no gradients).
"""

from __future__ import annotations

import torch

from ..errors import MethodError
from .core import (SaliencyMaps, batch_limit, check_reduce, forward_logits, reduce_channels, resolve_targets,
                   row_batches)
from .methods import register


def _pair(v, what: str) -> tuple[int, int]:
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vals) != 2 or any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in vals):
        raise MethodError(f"{what} must be a positive int or a pair of them, got {v!r}")
    return vals


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Top (or left) coordinates of the windows along one axis of length ``size``."""
    patch = min(patch, size)
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


@register("occlusion", expands=True)
def occlusion(net, x, targets, top_k, need_attr, max_batch, *, patch=32, stride=16, fill=0.0,
              reduce="mean") -> SaliencyMaps:
    """Occlusion maps: the mean logit drop over the windows covering each pixel.

    Options: patch, stride: int or (h, w); fill: a number or per-channel tensor [C] in the
    input space; reduce: channel reduction ("mean": the signed logit drop).
    """
    check_reduce(reduce)
    (ph, pw), (sh, sw) = _pair(patch, "patch"), _pair(stride, "stride")
    n, c, h, w = x.shape
    ph, pw = min(ph, h), min(pw, w)
    if isinstance(fill, torch.Tensor):
        if fill.numel() not in (1, c):
            raise MethodError(f"fill must be a number or a tensor of {c} channel values, got {tuple(fill.shape)}")
        value = fill.to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1).expand(c, ph, pw)
    elif isinstance(fill, (int, float)) and not isinstance(fill, bool):
        value = torch.full((c, ph, pw), float(fill), dtype=x.dtype, device=x.device)
    else:
        raise MethodError(f"fill must be a number or a tensor [C], got {type(fill).__name__}")
    limit = batch_limit(max_batch)
    logits = forward_logits(net, x, max_batch)
    t = resolve_targets(targets, logits, top_k)
    clean = logits.gather(1, t)
    windows = [(y, z) for y in window_starts(h, ph, sh) for z in window_starts(w, pw, sw)]
    nw = len(windows)

    def pieces():
        for i in range(n):
            for j0 in range(0, nw, limit):
                js = range(j0, min(nw, j0 + limit))
                rows = x[i].expand(len(js), c, h, w).clone()
                for r, j in enumerate(js):
                    y, z = windows[j]
                    rows[r, :, y:y + ph, z:z + pw] = value
                yield (torch.full((len(js),), i, dtype=torch.long), torch.tensor(list(js)), rows)

    total = torch.zeros((n, t.shape[1], h, w), dtype=torch.float64, device=x.device)
    count = torch.zeros((h, w), dtype=torch.float64, device=x.device)
    for y, z in windows:
        count[y:y + ph, z:z + pw] += 1
    for idx, win, rows in row_batches(pieces(), limit):
        with torch.no_grad():
            out = net.module(rows)
        idx_d = idx.to(x.device)
        delta = (clean[idx_d] - out.gather(1, t[idx_d])).double()  # [b, K]
        for r in range(len(idx)):
            y, z = windows[int(win[r])]
            total[int(idx[r]), :, y:y + ph, z:z + pw] += delta[r].view(-1, 1, 1)
    attr = (total / count).to(x.dtype).unsqueeze(2).expand(n, t.shape[1], c, h, w)
    return SaliencyMaps(maps=reduce_channels(attr, reduce), targets=t, scores=clean.float(), logits=logits,
                        attributions=attr.float().contiguous() if need_attr else None, method="occlusion")
